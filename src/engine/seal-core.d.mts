/** Types for seal-core.mjs (see there). */
export declare const ZSTD_LEVEL: number;
export declare function macRaw(macK: Uint8Array, macR: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array): Uint8Array;
export declare function sealRaw(encKey: Uint8Array, macK: Uint8Array, macR: Uint8Array, plaintext: Uint8Array): Buffer;
export declare function encodeBlobRaw(
  encKey: Uint8Array,
  macK: Uint8Array,
  macR: Uint8Array,
  plain: Uint8Array,
  allowCompression?: boolean,
): { data: Buffer; uncompressedLength: number | undefined };
export declare function openRaw(encKey: Uint8Array, macK: Uint8Array, macR: Uint8Array, ciphertext: Uint8Array, into?: (n: number) => Buffer): Buffer | null;
export declare function decodeBlobRaw(
  encKey: Uint8Array,
  macK: Uint8Array,
  macR: Uint8Array,
  id: string,
  stored: Uint8Array,
  uncompressedLength: number | undefined,
  scratch?: (n: number) => Buffer,
  cipherScratch?: (n: number) => Buffer,
): { plain: Buffer; error?: undefined } | { plain?: undefined; error: string };
export declare const freshSlot: (n: number) => { view: Buffer };
export declare function sealInto(encKey: Uint8Array, macK: Uint8Array, macR: Uint8Array, payload: Uint8Array, target: Uint8Array): void;
export declare function encodeBlobInto<S extends { view: Uint8Array }>(
  encKey: Uint8Array,
  macK: Uint8Array,
  macR: Uint8Array,
  plain: Uint8Array,
  /** false, true (ZSTD_LEVEL) or a zstd level. */
  allowCompression: boolean | number,
  alloc: (n: number) => S,
): { slot: S; uncompressedLength: number | undefined };
