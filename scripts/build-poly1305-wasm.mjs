// Generates the WebAssembly module behind src/engine/poly1305.mjs and embeds it there (base64,
// between the BEGIN/END WASM marker lines). Run `node scripts/build-poly1305-wasm.mjs` after
// changing this file; `--check` only verifies that the embedded bytes are up to date.
//
// The module is written here as flat lists of wasm instructions in text form (one instruction per
// string, WAT names) and assembled by the small encoder below, so no toolchain is needed. The
// arithmetic is poly1305-donna's 32-bit variant: the accumulator h and the clamped r in five
// 26-bit limbs, limb products in i64 (below 2^64 with a wide margin, see blocks below).
//
// Memory (two 64 KiB pages, exported, never grown):
//   0..31    key r || s, written by the caller before init()
//   32..47   the tag, written by finish()
//   64..     BUF_SIZE bytes of message, copied in by the caller before each blocks() call
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const target = path.join(root, 'src', 'engine', 'poly1305.mjs');

// ---- Encoder -------------------------------------------------------------------------------

const I32 = 0x7f;
const I64 = 0x7e;

function uleb(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    out.push(b);
  } while (v !== 0n);
  return out;
}

function sleb(n) {
  const out = [];
  let v = BigInt(n);
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    const done = (v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}

const utf8 = (s) => [...Buffer.from(s, 'utf8')];
const vec = (items) => [...uleb(items.length), ...items.flat()];
const section = (id, bytes) => [id, ...uleb(bytes.length), ...bytes];

const OPCODES = {
  'block': 0x02, 'loop': 0x03, 'if': 0x04, 'end': 0x0b, 'return': 0x0f, 'br': 0x0c, 'br_if': 0x0d,
  'select': 0x1b,
  'local.get': 0x20, 'local.set': 0x21, 'local.tee': 0x22, 'global.get': 0x23, 'global.set': 0x24,
  'i64.load': 0x29, 'i64.store': 0x37, 'i32.const': 0x41, 'i64.const': 0x42,
  'i32.eqz': 0x45, 'i32.lt_u': 0x49, 'i64.lt_s': 0x53, 'i64.lt_u': 0x54,
  'i32.add': 0x6a, 'i64.add': 0x7c, 'i64.sub': 0x7d, 'i64.mul': 0x7e, 'i64.and': 0x83,
  'i64.or': 0x84, 'i64.shl': 0x86, 'i64.shr_s': 0x87, 'i64.shr_u': 0x88, 'i64.extend_i32_u': 0xad,
};

/** Encodes one function body; locals and globals are referred to by name. */
function encodeBody(params, locals, globals, code) {
  const localIndex = new Map([...params, ...locals].map(([name], i) => [name, i]));
  const globalIndex = new Map(globals.map(([name], i) => [name, i]));
  const lookup = (map, name) => {
    if (!map.has(name)) throw new Error(`unknown name ${name}`);
    return map.get(name);
  };
  const out = [];
  for (const ins of code) {
    const [op, arg] = ins.split(' ');
    const opcode = OPCODES[op];
    if (opcode === undefined) throw new Error(`unknown instruction ${ins}`);
    out.push(opcode);
    if (op === 'block' || op === 'loop' || op === 'if') out.push(0x40);
    else if (op.startsWith('local.')) out.push(...uleb(lookup(localIndex, arg)));
    else if (op.startsWith('global.')) out.push(...uleb(lookup(globalIndex, arg)));
    else if (op === 'br' || op === 'br_if') out.push(...uleb(Number(arg)));
    else if (op.endsWith('.const')) out.push(...sleb(BigInt(arg)));
    else if (op === 'i64.load' || op === 'i64.store') {
      const offset = arg === undefined ? 0 : Number(arg.replace('offset=', ''));
      out.push(3, ...uleb(offset)); // align 2^3, then the offset
    } else if (arg !== undefined) throw new Error(`unexpected operand in ${ins}`);
  }
  out.push(0x0b);
  // Locals as runs of one type each.
  const runs = [];
  for (const [, type] of locals) {
    if (runs.length > 0 && runs[runs.length - 1][1] === type) runs[runs.length - 1][0]++;
    else runs.push([1, type]);
  }
  const body = [...vec(runs.map(([n, type]) => [...uleb(n), type])), ...out];
  return [...uleb(body.length), ...body];
}

// ---- Expression helpers (each returns an instruction list) ----------------------------------

const get = (name) => [`local.get ${name}`];
const set = (name, expr) => [...expr, `local.set ${name}`];
const k64 = (n) => [`i64.const ${BigInt.asIntN(64, BigInt(n))}`];
const op2 = (op) => (a, b) => [...a, ...b, op];
const add = op2('i64.add');
const mul = op2('i64.mul');
const and = op2('i64.and');
const or = op2('i64.or');
const shl = (a, n) => [...a, ...k64(n), 'i64.shl'];
const shr = (a, n) => [...a, ...k64(n), 'i64.shr_u'];
const sum = (terms) => terms.reduce((acc, t) => add(acc, t));
const load64 = (ptr, offset) => [...ptr, `i64.load offset=${offset}`];
const store64 = (ptr, offset, value) => [...ptr, ...value, `i64.store offset=${offset}`];
const names = (prefix, n, from = 0) => Array.from({ length: n }, (_, i) => `${prefix}${i + from}`);

const M26 = (1n << 26n) - 1n;
const BUF = 64;
const BUF_SIZE = 65536;
const H = names('h', 5);
const R = names('r', 5);
const S = names('s', 4, 1); // s1..s4 = 5 * r1..r4: 2^130 ≡ 5 (mod p) folds the high products
const D = names('d', 5);

/** Splits the 128 bits lo || hi (little-endian) into five 26-bit limbs (the top one 24 bits). */
const limbs = (lo, hi) => [
  and(lo, k64(M26)),
  and(shr(lo, 26), k64(M26)),
  and(or(shr(lo, 52), shl(hi, 12)), k64(M26)),
  and(shr(hi, 14), k64(M26)),
  shr(hi, 40),
];

/** h <- h * r mod p (partially reduced): the schoolbook 5x5 product, high limbs folded by 5. */
function mulReduce() {
  const code = [];
  for (let i = 0; i < 5; i++) {
    // d_i = sum over j + k = i of h_j r_k, plus sum over j + k = i + 5 of h_j * 5 r_k.
    const terms = [];
    for (let j = 0; j < 5; j++) {
      const k = i - j;
      terms.push(mul(get(H[j]), get(k >= 0 ? R[k] : S[k + 5 - 1])));
    }
    code.push(...set(D[i], sum(terms)));
  }
  // One carry pass: every limb below 2^26 afterwards except h1, below 2^26 + 2^10 (the carry
  // out of d4 is below 2^33, five times that added to h0 carries less than 2^10 into h1).
  for (let i = 0; i < 4; i++) {
    code.push(...set('c', shr(get(D[i]), 26)), ...set(H[i], and(get(D[i]), k64(M26))));
    code.push(...set(D[i + 1], add(get(D[i + 1]), get('c'))));
  }
  code.push(...set('c', shr(get(D[4]), 26)), ...set(H[4], and(get(D[4]), k64(M26))));
  code.push(...set(H[0], add(get(H[0]), mul(get('c'), k64(5)))));
  code.push(...set('c', shr(get(H[0]), 26)), ...set(H[0], and(get(H[0]), k64(M26))));
  code.push(...set(H[1], add(get(H[1]), get('c'))));
  return code;
}

// ---- The module ----------------------------------------------------------------------------

const globals = [...H, ...R, ...S].map((name) => [name, I64]);
const loadState = (list) => list.flatMap((name) => [`global.get ${name}`, `local.set ${name}`]);
const saveState = (list) => list.flatMap((name) => [`local.get ${name}`, `global.set ${name}`]);

/** init(): clamps r from key bytes 0..15 (RFC 8439 section 2.5) and clears the accumulator. */
const init = {
  name: 'init',
  params: [],
  locals: [['lo', I64], ['hi', I64], ...R.map((n) => [n, I64])],
  code: [
    ...set('lo', and(load64(['i32.const 0'], 0), k64(0x0ffffffc0fffffffn))),
    ...set('hi', and(load64(['i32.const 0'], 8), k64(0x0ffffffc0ffffffcn))),
    ...limbs(get('lo'), get('hi')).flatMap((expr, i) => set(R[i], expr)),
    ...saveState(R),
    ...S.flatMap((name, i) => [...mul(get(R[i + 1]), k64(5)), `global.set ${name}`]),
    ...H.flatMap((name) => ['i64.const 0', `global.set ${name}`]),
  ],
};

/**
 * blocks(ptr, len, hibit): absorbs len / 16 blocks at ptr; hibit is 1 << 24 (the 2^128 bit as seen
 * from the top limb) for whole blocks, 0 for the final block the caller has already padded.
 * Bounds: h limbs < 2^26 + 2^10 plus message limbs < 2^26 make h_j < 2^27; r_k < 2^26 and
 * 5 r_k < 2^29, so each d_i (five products) stays below 5 * 2^56 < 2^59.
 */
const blocks = {
  name: 'blocks',
  params: [['ptr', I32], ['len', I32], ['hibit', I32]],
  locals: [['end', I32], ...[...H, ...R, ...S, ...D, 'c', 'lo', 'hi', 'hb'].map((n) => [n, I64])],
  code: [
    'local.get len', 'i32.eqz', 'if', 'return', 'end',
    'local.get ptr', 'local.get len', 'i32.add', 'local.set end',
    'local.get hibit', 'i64.extend_i32_u', 'local.set hb',
    ...loadState([...H, ...R, ...S]),
    'loop',
    ...set('lo', load64(get('ptr'), 0)),
    ...set('hi', load64(get('ptr'), 8)),
    ...limbs(get('lo'), get('hi')).flatMap((expr, i) =>
      set(H[i], add(get(H[i]), i === 4 ? or(expr, get('hb')) : expr))),
    ...mulReduce(),
    'local.get ptr', 'i32.const 16', 'i32.add', 'local.tee ptr',
    'local.get end', 'i32.lt_u', 'br_if 0',
    'end',
    ...saveState(H),
  ],
};

/** finish(): reduces h fully mod 2^130 - 5, adds s (key bytes 16..31) mod 2^128, writes the tag. */
const G = names('g', 5);
const finishCode = [...loadState(H)];
{
  // Full carry: afterwards h0..h4 < 2^26 except h1 < 2^26 + 1, i.e. h < 2^130 + small.
  const carry = (from, to, times5 = false) => [
    ...set('c', shr(get(from), 26)),
    ...set(from, and(get(from), k64(M26))),
    ...set(to, add(get(to), times5 ? mul(get('c'), k64(5)) : get('c'))),
  ];
  finishCode.push(...carry('h1', 'h2'), ...carry('h2', 'h3'), ...carry('h3', 'h4'));
  finishCode.push(...carry('h4', 'h0', true), ...carry('h0', 'h1'));
  // g = h + 5 - 2^130; h >= p exactly when g does not go negative, and then h mod p = g.
  finishCode.push(...set('g0', add(get('h0'), k64(5))));
  for (let i = 0; i < 4; i++) {
    finishCode.push(...set('c', shr(get(G[i]), 26)), ...set(G[i], and(get(G[i]), k64(M26))));
    finishCode.push(...set(G[i + 1], add(get(H[i + 1]), get('c'))));
  }
  finishCode.push(...set('g4', [...get('g4'), ...k64(1n << 26n), 'i64.sub']));
  const negative = [...get('g4'), ...k64(0), 'i64.lt_s'];
  for (let i = 0; i < 5; i++) {
    finishCode.push(...set(H[i], [...get(H[i]), ...get(G[i]), ...negative, 'select']));
  }
  // Carry h1..h3 once more so that every limb is below 2^26 whichever of h and g was selected
  // (h1 may be 2^26 after the carry above), then pack into 128 bits (h4 << 40 loses only bits
  // >= 2^128) and add s with the carry from the low 64 bits.
  finishCode.push(...carry('h1', 'h2'), ...carry('h2', 'h3'), ...carry('h3', 'h4'));
  finishCode.push(...set('lo', or(or(get('h0'), shl(get('h1'), 26)), shl(get('h2'), 52))));
  finishCode.push(...set('hi', or(or(shr(get('h2'), 12), shl(get('h3'), 14)), shl(get('h4'), 40))));
  finishCode.push(...set('c', add(get('lo'), load64(['i32.const 0'], 16))));
  finishCode.push(...set('hi', add(add(get('hi'), load64(['i32.const 0'], 24)),
    [...get('c'), ...get('lo'), 'i64.lt_u', 'i64.extend_i32_u'])));
  finishCode.push(...store64(['i32.const 0'], 32, get('c')), ...store64(['i32.const 0'], 40, get('hi')));
}
const finish = {
  name: 'finish',
  params: [],
  locals: [...H, ...G, 'c', 'lo', 'hi'].map((n) => [n, I64]),
  code: finishCode,
};

const funcs = [init, blocks, finish];
const types = funcs.map((f) => [0x60, ...vec(f.params.map(([, t]) => [t])), 0]);
const wasm = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, vec(types)),
  ...section(3, vec(funcs.map((_, i) => uleb(i)))),
  ...section(5, vec([[0x00, ...uleb(2)]])), // one memory, two pages minimum, no maximum
  ...section(6, vec(globals.map(([, t]) => [t, 0x01, 0x42, 0x00, 0x0b]))), // mutable, = 0
  ...section(7, vec([
    [...vec(utf8('memory')), 0x02, 0],
    ...funcs.map((f, i) => [...vec(utf8(f.name)), 0x00, ...uleb(i)]),
  ])),
  ...section(10, vec(funcs.map((f) => encodeBody(f.params, f.locals, globals, f.code)))),
]);
if (!WebAssembly.validate(wasm)) {
  new WebAssembly.Module(wasm); // throws with the reason
}

// ---- Embed ---------------------------------------------------------------------------------

const BEGIN = '// BEGIN WASM (generated by scripts/build-poly1305-wasm.mjs, do not edit)';
const END = '// END WASM';
const base64 = Buffer.from(wasm).toString('base64');
const lines = [`const BUF = ${BUF};`, `const BUF_SIZE = ${BUF_SIZE};`, 'const WASM_BASE64 ='];
for (let i = 0; i < base64.length; i += 96) {
  const last = i + 96 >= base64.length;
  lines.push(`  '${base64.slice(i, i + 96)}'${last ? ';' : ' +'}`);
}
const source = readFileSync(target, 'utf8');
const from = source.indexOf(BEGIN);
const to = source.indexOf(END);
if (from < 0 || to < from) throw new Error(`${target} has no ${BEGIN} ... ${END} section`);
const updated = `${source.slice(0, from)}${BEGIN}\n${lines.join('\n')}\n${source.slice(to)}`;
if (process.argv.includes('--check')) {
  if (updated !== source) {
    console.error('src/engine/poly1305.mjs is out of date: run node scripts/build-poly1305-wasm.mjs');
    process.exit(1);
  }
  console.log(`poly1305 wasm up to date (${wasm.length} bytes)`);
} else {
  writeFileSync(target, updated);
  console.log(`wrote ${wasm.length} bytes of wasm into src/engine/poly1305.mjs`);
}
