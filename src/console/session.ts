/**
 * The signed-in key. Kept in sessionStorage (gone with the tab, never in the URL, so it does not
 * end up in history, logs or a shared link), with the scopes the API reported for it.
 */
const KEY = 'backplane.apiKey';

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function storeKey(key: string) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

/** What a key may do, from `viewer { scopes }` (the API expands admin into the scopes it implies). */
export interface Abilities {
  write: boolean;
  admin: boolean;
}

export function abilitiesOf(scopes: readonly string[]): Abilities {
  return { write: scopes.includes('backups:write') || scopes.includes('admin'), admin: scopes.includes('admin') };
}
