/** What dispatch sends to worker: shared by both, so neither function imports the other. */
export interface WorkItem {
  /** The idempotency key: the worker runs each id once. */
  readonly id: string;
  readonly [field: string]: unknown;
}
