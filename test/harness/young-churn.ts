/**
 * JavaScript for a process of its own: allocates over many turns of the event loop, keeping much
 * alive (as requests and jobs do), and leaves in `max` the largest young generation this thread
 * had, read through a function `young()` the surrounding script defines (bytes).
 */
export const CHURN = `
let keep = [];
let max = 0;
for (let turn = 0; turn < 300; turn++) {
  for (let i = 0; i < 5000; i++) {
    keep.push({ a: i, b: 'x' + i });
    if (keep.length > 60000) keep = keep.slice(30000);
  }
  max = Math.max(max, young());
  await new Promise((r) => setImmediate(r));
}
`;
