/** Types for chunker-core.mjs (see there). */
export declare const GEAR: Int32Array;
export declare function topMask(bits: number): number;
export declare function masksFor(avg: number): { maskS: number; maskL: number };
export declare function findCut(
  buf: Uint8Array,
  start: number,
  end: number,
  params: { min: number; avg: number; max: number },
  masks: { maskS: number; maskL: number },
  eof: boolean,
  resume?: { rel: number; h: number },
): number;
export declare const READ_AHEAD: number;
export declare function cutBufferSize(params: { max: number }): number;
export declare function cutChunks(
  buf: Buffer,
  read: (buf: Buffer, off: number, want: number) => number,
  knownSize: number,
  params: { min: number; avg: number; max: number },
  onChunk: (chunk: Buffer) => void,
  beforeMove: () => void,
  cuts?: readonly number[],
): number;
export declare function tarEntryCuts(): { cuts: number[]; push: (bytes: Uint8Array) => void };
