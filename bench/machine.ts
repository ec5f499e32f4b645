/** The machine a benchmark ran on, recorded with its results: CPU, memory, kernel, Node and the tools' versions. */
import { execFileSync } from 'node:child_process';
import os from 'node:os';

/** `tools`: a name per tool and the command (program, arguments) whose first output line is its version. */
export function machineInfo(tools: Record<string, [string, string[]]>): Record<string, string | number> {
  const version = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).split('\n')[0].trim();
    } catch {
      return 'unknown';
    }
  };
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: os.release(),
    node: process.version,
    ...Object.fromEntries(Object.entries(tools).map(([name, [cmd, args]]) => [name, version(cmd, args)])),
  };
}
