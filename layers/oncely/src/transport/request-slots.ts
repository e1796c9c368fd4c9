/**
 * The REST transport's bound on requests in flight to one origin (`upstashStore`'s `maxConnections`): a
 * request is sent only while it holds a slot, so a burst never opens more sockets than there are slots (the
 * keep-alive agent's `maxSockets` is the same number). A request that finds no slot free waits, first come
 * first served; the store (upstash-client.ts) holds its calls back meanwhile and sends them together when a
 * slot frees, rather than a request per tick waiting in line. Kept out of the client chunk: the store needs
 * it before the client is loaded.
 */
export class RequestSlots {
  #busy = 0;
  /** Requests waiting for a slot, oldest first: each is handed the slot a finished request gives back. */
  readonly #waiting: (() => void)[] = [];
  /** Called when a slot is free and no request waits for it (the store then sends what it holds back). */
  onFree: (() => void) | undefined;

  constructor(readonly size: number) {}

  /** A slot is free now. */
  get free(): boolean {
    return this.#busy < this.size;
  }

  /** Takes a slot if one is free. */
  tryTake(): boolean {
    if (this.#busy >= this.size) return false;
    this.#busy++;
    return true;
  }

  /**
   * Waits for a slot (after tryTake() found none): `start` runs holding the slot when a finished request
   * gives it back. The returned function withdraws the wait.
   */
  wait(start: () => void): () => void {
    this.#waiting.push(start);
    return () => {
      const i = this.#waiting.indexOf(start);
      if (i >= 0) this.#waiting.splice(i, 1);
    };
  }

  /** Gives a slot back: to the oldest waiting request, else to the store. */
  release(): void {
    const next = this.#waiting.shift();
    if (next) {
      next();
      return;
    }
    this.#busy--;
    this.onFree?.();
  }
}
