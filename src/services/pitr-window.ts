import type { Deps } from './deps.ts';
import type { RecoveryWindow } from './pitr-archive.ts';

/**
 * The recovery window the archiving side keeps in the catalog (`recoveryWindow(deps,
 * environmentId)`: earliest and latest recoverable time, and the gaps it saw, such as the
 * streamer down past the slot cap), for checkRecoverable to refuse a time the repository alone
 * would not show as lost. The plug: until that side is merged there is no catalog window, and
 * the repository's own base and WAL snapshots decide alone; once merged, this returns its
 * `recoveryWindow(deps, environmentId)`.
 */
export async function catalogRecoveryWindow(_deps: Deps, _environmentId: string): Promise<RecoveryWindow | null> {
  return null;
}
