/**
 * The run-once suite's configuration, shared by both sides of every row (suite-once.ts) and stated in
 * docs/benchmarks.md (notes.ts). A module of its own, with no imports, so the notes and their tests do not load
 * the clients.
 */
/** The configuration both sides share, so that each row compares the same work. */
export const CONFIG = Object.freeze({
  /** A single call's key: the event's `id`, by expression on both sides; neither checks the payload. */
  callKey: 'id',
  /** A batch record's key, by expression on both sides. */
  recordKey: 'messageId',
  /** What a reuse of a record's key must match, hashed, on both sides. */
  recordPayload: 'body',
  /** How long a completed record is kept, on both sides (Powertools' default `expiresAfterSeconds`). */
  retentionMs: 3_600_000,
  /** Both local caches' size; each keeps a completed record until the record expires. */
  localCacheEntries: 256,
  /** Records per SQS batch. */
  batchSize: 10,
  /** Completed events each duplicate contender replays (they fit both local caches). */
  duplicatePool: 50,
});
