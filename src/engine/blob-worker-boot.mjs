// Entry of encoder worker threads. Worker threads do not inherit tsx's loader reliably on
// Node 20, so register it here before importing the TypeScript worker body.
import { register } from 'tsx/esm/api';

register();
await import('./blob-worker.ts');
