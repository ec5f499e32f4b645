import { describe, expect, it } from 'vitest';
import { steadyTotal } from '../../src/services/operations.ts';

/** The percent the API shows for a state (src/schema/operation.ts). */
const percent = (done: number, total: number | null) => (total ? Math.min(100, Math.round((done / total) * 1000) / 10) : null);

describe('steadyTotal', () => {
  it('keeps the percent from going backwards or reaching 100, whatever the estimate does', () => {
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let run = 0; run < 200; run++) {
      const steady = steadyTotal();
      const real = 1 + Math.floor(random() * 10_000_000);
      let estimate: number | undefined = random() < 0.2 ? undefined : Math.floor(real * (0.2 + random() * 3));
      let done = 0;
      const seen: number[] = [];
      while (done < real) {
        done = Math.min(real, done + 1 + Math.floor(random() * real * 0.1));
        // Now and then the estimate is corrected (the engine learns a stream's real size).
        if (random() < 0.05) estimate = Math.max(done, Math.floor(real * (0.5 + random())));
        const p = percent(done, steady(done, estimate));
        if (p !== null) seen.push(p);
      }
      for (let i = 1; i < seen.length; i++) expect(seen[i], `run ${run}: ${seen.join(' ')}`).toBeGreaterThanOrEqual(seen[i - 1]);
      expect(seen.every((p) => p < 100)).toBe(true);
    }
  });

  it('uses the estimate as it is while the work stays within it', () => {
    const steady = steadyTotal();
    expect(steady(0, 1000)).toBe(1000);
    expect(steady(500, 1000)).toBe(1000);
    expect(steadyTotal()(0, null)).toBeNull();
  });
});
