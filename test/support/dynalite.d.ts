/** dynalite 4.0.0 ships no types: the part the tests and the bench use (an in-memory DynamoDB server). */
declare module 'dynalite' {
  import type { Server } from 'node:http';

  interface DynaliteOptions {
    createTableMs?: number;
    updateTableMs?: number;
    deleteTableMs?: number;
  }
  export default function dynalite(options?: DynaliteOptions): Server;
}
