/**
 * Layout of the control words a stream shares between the main thread (codec-pool.ts) and its
 * codec thread (codec-thread.mjs): indices into an Int32Array over a SharedArrayBuffer.
 */
export const STREAM = Object.freeze({
  /** Bytes copied into the input ring and not yet taken by the thread. */
  USED: 0,
  /** OPEN, ENDED (every byte is in the ring) or ABORTED. */
  STATE: 1,
  /** Bumped by the main thread after each change; the thread sleeps on it. */
  WAKE: 2,
  /** First answer cell (see codec-thread.mjs streamJob). */
  ANSWERS: 3,
  ANSWER_CELLS: 1024,
  OPEN: 0,
  ENDED: 1,
  ABORTED: 2,
  /** Size of the input ring. */
  INPUT_BYTES: 4 * 1024 * 1024,
  /**
   * Room in the cutting buffer beyond what cutChunks needs: chunks wait there for their
   * answers and for other threads sealing them, and the buffer is compacted (which waits for
   * all of them) about once per this many bytes.
   */
  CUT_SLACK: 16 * 1024 * 1024,
});

/** Bytes of the control words. */
export const STREAM_CTL_BYTES = 4 * (STREAM.ANSWERS + STREAM.ANSWER_CELLS);

/** Wakes the stream's thread after a change it may wait for. */
export function wakeStream(ctl) {
  Atomics.add(ctl, STREAM.WAKE, 1);
  Atomics.notify(ctl, STREAM.WAKE);
}

/**
 * Answers chunk k: seal it on the cutting thread (true), or nothing to do there (false: the
 * repository has it, or another thread sealed it). The cell holds k + 1 or -(k + 1).
 */
export function answerChunk(ctl, k, seal) {
  Atomics.store(ctl, STREAM.ANSWERS + (k % STREAM.ANSWER_CELLS), seal ? k + 1 : -(k + 1));
  wakeStream(ctl);
}

/** Chunk k's answer (see answerChunk), or undefined while there is none. */
export function chunkAnswer(ctl, k) {
  const v = Atomics.load(ctl, STREAM.ANSWERS + (k % STREAM.ANSWER_CELLS));
  return v === k + 1 ? true : v === -(k + 1) ? false : undefined;
}
