import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/**
 * Fails the test file when a tool its tests rest on is missing (restic as the independent reader,
 * pg_dump…): a missing prerequisite makes a red run with the reason, never quietly skipped
 * checks and a green run that proved less. `.ci/run` installs them.
 */
export async function requireTool(command: string, args: string[], install: string): Promise<void> {
  await exec(command, args).catch((err: Error) => {
    throw new Error(`${command} is required by these tests and could not be run (${install}): ${err.message}`);
  });
}
