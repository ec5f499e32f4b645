/** Types for stream-ctl.mjs (see there). */
export declare const STREAM: {
  readonly USED: number;
  readonly STATE: number;
  readonly WAKE: number;
  readonly ANSWERS: number;
  readonly ANSWER_CELLS: number;
  readonly OPEN: number;
  readonly ENDED: number;
  readonly ABORTED: number;
  readonly INPUT_BYTES: number;
  readonly CUT_SLACK: number;
};
export declare const STREAM_CTL_BYTES: number;
export declare function wakeStream(ctl: Int32Array): void;
export declare function answerChunk(ctl: Int32Array, k: number, seal: boolean): void;
export declare function chunkAnswer(ctl: Int32Array, k: number): boolean | undefined;
