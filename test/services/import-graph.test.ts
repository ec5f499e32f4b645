import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The services form a graph without cycles (docs/architecture.md): a service calls services below
 * it, and follow-up work travels through the job queue or an event. This reads the imports of
 * src/services/*.ts as they are written and fails on any cycle, naming it.
 *
 * Imports that only bring types count too: the compiler erases them, but a type shared both ways
 * still ties two modules together (the shape belongs in the lower one). Dynamic `import()` counts
 * like a static import, so a cycle cannot hide behind one.
 */

const servicesDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/services');

/** The service modules a file imports, types included (file names within src/services). */
export function serviceImports(fileName: string, source: string): string[] {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const found = new Set<string>();
  const add = (specifier: string) => {
    if (!specifier.startsWith('./')) return; // another layer, or a package
    const target = specifier.slice(2);
    if (!target.includes('/')) found.add(target);
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
      add(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return [...found].sort();
}

/** Each cycle of the graph, one per strongly connected component, as a path that returns to its start. */
export function cyclesOf(graph: Map<string, string[]>): { cycle: string[]; members: string[] }[] {
  // Tarjan's strongly connected components.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) components.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v);

  // Within a component, the shortest way from its first module back to itself (breadth first).
  return components.map((component) => {
    const members = new Set(component);
    const start = component[0];
    const from = new Map<string, string>();
    const queue = [start];
    while (queue.length) {
      const v = queue.shift()!;
      for (const w of graph.get(v) ?? []) {
        if (!members.has(w)) continue;
        if (w === start) {
          const path = [start];
          for (let u = v; u !== start; u = from.get(u)!) path.splice(1, 0, u);
          return { cycle: [...path, start], members: component };
        }
        if (!from.has(w)) {
          from.set(w, v);
          queue.push(w);
        }
      }
    }
    return { cycle: [start, start], members: component };
  });
}

function servicesGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const name of readdirSync(servicesDir).filter((f) => f.endsWith('.ts')).sort()) {
    graph.set(name, serviceImports(name, readFileSync(join(servicesDir, name), 'utf8')));
  }
  return graph;
}

describe('the import graph of src/services', () => {
  it('has no cycle', () => {
    const graph = servicesGraph();
    expect(graph.size).toBeGreaterThan(10);
    const name = (f: string) => basename(f, '.ts');
    const described = cyclesOf(graph).map(({ cycle, members }) => `${cycle.map(name).join(' → ')}  (one of the cycles among: ${members.map(name).join(', ')})`);
    expect(described, `import cycles among the services:\n${described.join('\n')}`).toEqual([]);
  });

  it('reads every import of a service module, types included, and finds a cycle among them', () => {
    const a = [
      "import { b } from './b.ts';",
      "import type { C } from './c.ts';",
      "import { type D } from './d.ts';",
      "import { e, type E } from './e.ts';",
      "export { f } from './f.ts';",
      "import { g } from '../domain/g.ts';",
      "const h = () => import('./h.ts');",
    ].join('\n');
    expect(serviceImports('a.ts', a)).toEqual(['b.ts', 'c.ts', 'd.ts', 'e.ts', 'f.ts', 'h.ts']);

    const graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts', 'd.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', []],
      ['e.ts', ['e.ts']],
    ]);
    expect(cyclesOf(graph)).toEqual([
      { cycle: ['a.ts', 'b.ts', 'c.ts', 'a.ts'], members: ['a.ts', 'b.ts', 'c.ts'] },
      { cycle: ['e.ts', 'e.ts'], members: ['e.ts'] },
    ]);
    expect(cyclesOf(new Map([['a.ts', ['b.ts']], ['b.ts', []]]))).toEqual([]);
  });
});
