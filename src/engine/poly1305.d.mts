/** Types for poly1305.mjs (see there). */
export declare function poly1305(msg: Uint8Array, key: Uint8Array): Uint8Array;
