/**
 * Operations this tab has seen start (from its own mutations or from environment activity), so the
 * Live operations page can follow them; the API has no "every running operation" query. Kept in
 * sessionStorage so a reload re-reads them by id and resumes from their current state.
 */
import { useEffect, useState } from 'preact/hooks';

const KEY = 'backplane.operations';
const LIMIT = 50;
const listeners = new Set<() => void>();

function read(): string[] {
  try {
    const v = JSON.parse(sessionStorage.getItem(KEY) ?? '[]') as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

export function trackOperation(id: string) {
  const ids = read();
  if (ids.includes(id)) return;
  sessionStorage.setItem(KEY, JSON.stringify([id, ...ids].slice(0, LIMIT)));
  for (const l of listeners) l();
}

export function forgetOperation(id: string) {
  sessionStorage.setItem(KEY, JSON.stringify(read().filter((x) => x !== id)));
  for (const l of listeners) l();
}

export function useTrackedOperations(): string[] {
  const [ids, setIds] = useState(read);
  useEffect(() => {
    const l = () => setIds(read());
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return ids;
}
