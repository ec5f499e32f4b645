/**
 * The explicit list of graphile-worker tasks. Each task lives in its own file, zod-parses its
 * payload (ids only) and calls a service; task names are snake_case `<domain>_<verb>`.
 * Snapshot, restore and schedule tasks are added by their issues.
 */
import type { TaskList } from 'graphile-worker';

export const taskList: TaskList = {};
