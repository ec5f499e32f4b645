import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Abilities } from './session.ts';

export interface ConsoleState {
  abilities: Abilities;
  /** Bumped each time graphql-ws reconnects: views re-read what they show. */
  reconnects: number;
  navigate(path: string): void;
}

export const StateContext = createContext<ConsoleState>({ abilities: { write: false, admin: false }, reconnects: 0, navigate: () => undefined });

export function useConsole(): ConsoleState {
  return useContext(StateContext);
}
