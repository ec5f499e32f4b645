import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The run's globalSetup (test/harness/run-temp.ts) gives every test process, and what it starts,
// a temporary folder that the run removes at its end: what a test leaks goes with it.
describe('the test run temporary folder', () => {
  it('is the TMPDIR of test files and of the processes they start', () => {
    const dir = os.tmpdir();
    expect(path.basename(dir)).toMatch(/^bp-test-run-\d+-/);
    expect(existsSync(dir)).toBe(true);
    const child = execFileSync(process.execPath, ['-e', 'process.stdout.write(require("node:os").tmpdir())'], { encoding: 'utf8' });
    expect(child).toBe(dir);
  });
});
