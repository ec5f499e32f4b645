/**
 * Times in trees: RFC 3339 in UTC with up to nine fractional digits and no trailing zeros, as
 * restic writes them. Plain JavaScript, so the scanning threads format the times they lstat.
 */

// The last second formatted: a file's three times, and neighbouring files', mostly share it,
// and Date's toISOString is most of the cost.
let lastSec = null;
let lastIso = '';

/** Formats nanoseconds since the epoch. */
export function formatTime(ns) {
  let sec = ns / 1_000_000_000n;
  let frac = ns % 1_000_000_000n;
  if (frac < 0n) {
    frac += 1_000_000_000n;
    sec -= 1n;
  }
  if (sec !== lastSec) {
    lastIso = new Date(Number(sec) * 1000).toISOString().slice(0, 19);
    lastSec = sec;
  }
  const iso = lastIso;
  const f = frac === 0n ? '' : '.' + frac.toString().padStart(9, '0').replace(/0+$/, '');
  return `${iso}${f}Z`;
}
