/**
 * Operations this tab has seen (its own mutations, environment activity, the running ones the
 * Operations page listed), so the Live operations page keeps showing them once they end. Kept in
 * sessionStorage so a reload re-reads them by id and resumes from their current state.
 */
import { useEffect, useState } from 'preact/hooks';

const KEY = 'backplane.operations';
const LIMIT = 50;
const listeners = new Set<() => void>();

export interface Tracked {
  id: string;
  /** The environment it works on, when known: its page shows it too. */
  environmentId?: string;
}

function read(): Tracked[] {
  try {
    const v = JSON.parse(sessionStorage.getItem(KEY) ?? '[]') as unknown;
    return Array.isArray(v) ? v.filter((x): x is Tracked => typeof x?.id === 'string') : [];
  } catch {
    return [];
  }
}

function write(list: Tracked[]) {
  sessionStorage.setItem(KEY, JSON.stringify(list.slice(0, LIMIT)));
  for (const l of listeners) l();
}

export function trackOperation(id: string, environmentId?: string) {
  const list = read();
  if (list.some((t) => t.id === id)) return;
  write([{ id, environmentId }, ...list]);
}

export function forgetOperation(id: string) {
  write(read().filter((t) => t.id !== id));
}

export function useTrackedOperations(): Tracked[] {
  const [list, setList] = useState(read);
  useEffect(() => {
    const l = () => setList(read());
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return list;
}
