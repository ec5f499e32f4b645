/** Types for time.mjs (see there). */
export declare function formatTime(ns: bigint): string;
