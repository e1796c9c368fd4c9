/**
 * Talking to several independent stores at once (Redlock, leader election over a Redlock): one script on every
 * node, each bounded by a per-node timeout, answers collected as they come, and the per-node reply parsers.
 */
import { type Deadline, Deadlines } from './clock.js';
import { type NodeOutcome, OncelyError, StoreError, StoreUnavailableError } from './errors.js';
import { ACQUIRE, ownerReply, type Script } from './scripts.js';
import type { ScriptArg, Store } from './transport/types.js';

export const MAX_NODE_TIMEOUT_MS = 60_000;

/**
 * The longest default per-node timeout: a lease of 10 s or more gets it, and so does a call that knows no TTL
 * (a Redlock release, observing a leader).
 */
export const MAX_DEFAULT_NODE_TIMEOUT_MS = 1000;

/** The default per-node timeout for a TTL: a tenth of it, within [10, MAX_DEFAULT_NODE_TIMEOUT_MS] ms. */
export function defaultNodeTimeoutMs(ttlMs: number): number {
  return Math.min(MAX_DEFAULT_NODE_TIMEOUT_MS, Math.max(10, Math.round(ttlMs / 10)));
}

// ------------------------------------------------------------------------------------------- fan-out

/** One node's answer: its reply, or the error it failed with (a StoreError, or the per-node timeout). */
export type NodeAnswer = { ok: true; value: unknown } | { ok: false; error: Error };

/** A node that did not answer in time: ambiguous (the request may still run). */
function noReply(store: string, within: string): NodeAnswer {
  return {
    ok: false,
    error: new StoreUnavailableError(`${store}: no reply within ${within}`, { store, ambiguous: true }),
  };
}

/**
 * Runs `script` on every store at once. `answers[i]` settles (never rejects) with node i's reply, or with a
 * StoreUnavailableError once `timeoutMs` has passed; `raw[i]` is the request itself, which may settle later.
 */
export function fanOut(
  stores: readonly Store[],
  script: Script,
  keys: readonly string[],
  args: readonly ScriptArg[],
  timeoutMs: number,
): { answers: Promise<NodeAnswer>[]; raw: Promise<unknown>[] } {
  const raw = stores.map((store) => {
    try {
      return store.run(script, keys, args);
    } catch (err) {
      return Promise.reject(err);
    }
  });
  const answers = raw.map(
    (request, i) =>
      new Promise<NodeAnswer>((resolve) => {
        const name = stores[i]!.name;
        const timer = setTimeout(() => resolve(noReply(name, `the ${timeoutMs} ms node timeout`)), timeoutMs);
        request.then(
          (value) => {
            clearTimeout(timer);
            resolve({ ok: true, value });
          },
          (error: unknown) => {
            clearTimeout(timer);
            resolve({ ok: false, error: error instanceof Error ? error : new Error(String(error)) });
          },
        );
      }),
  );
  return { answers, raw };
}

/** What gather() hands back: the decision, every answer as it lands, and the requests themselves. */
export interface Gathered<T> {
  /**
   * Settles (never rejects) with a snapshot of the parsed answers as soon as `enough` holds after an answer,
   * or once every node has answered or timed out. Nodes still out are `undefined` in it.
   */
  readonly decided: Promise<(T | undefined)[]>;
  /** Every parsed answer as it lands, also after the decision (a failed attempt names every node it heard). */
  readonly heard: readonly (T | undefined)[];
  /** The requests themselves, which may settle after their node timed out. */
  readonly raw: Promise<unknown>[];
}

/**
 * How long the nodes still out get once `hurry` holds (a split: the nodes that answered cannot make a quorum on
 * their own and one already has another holder): this part of the node timeout, or as long again as the
 * answers so far took if that is longer. Waiting the whole node timeout holds our partial grants against every
 * other contender for as long, and with a node down contenders split again as they give back at different
 * moments: a livelock that stalled contention rounds for 10-38 s (test/integration/redlock-contention.test.ts).
 * Not much shorter either: a live node that is only late (a NOSCRIPT fallback, a GC pause) still makes the
 * quorum, as when a fresh client's release of its last lease reaches one node after its next acquire.
 */
export const SPLIT_WAIT_PARTS = 10;

/**
 * Runs `script` on every store at once and decides as soon as `enough` holds: fanOut and a quorum check in
 * one, for the hot paths of a Redlock (acquire, extend, release). Each answer goes through `parse` once, as
 * it lands; a node that has not answered within `timeoutMs` gets a StoreUnavailableError. The nodes start
 * together and share their timeout, so one deadline covers them all (one timer per duration, clock.ts), and
 * each request costs one reaction, not a chain of promises. Once `hurry` holds, the nodes still out get a tenth of `timeoutMs` (SPLIT_WAIT_PARTS) or
 * as long again as the answers so far took, whichever is longer.
 */
export function gather<T>(
  stores: readonly Store[],
  script: Script,
  keys: readonly string[],
  args: readonly ScriptArg[],
  timeoutMs: number,
  parse: (i: number, answer: NodeAnswer) => T,
  enough: (heard: readonly (T | undefined)[]) => boolean,
  hurry?: (heard: readonly (T | undefined)[]) => boolean,
): Gathered<T> {
  return new Gathering(stores, script, keys, args, timeoutMs, parse, enough, hurry);
}

/**
 * One gather(): its state in fields and its steps as methods, so that a call makes no named closure (the
 * layer's build keeps function names: each named closure made per call cost a defineProperty).
 */
class Gathering<T> implements Gathered<T> {
  readonly decided: Promise<(T | undefined)[]>;
  readonly heard: (T | undefined)[];
  readonly raw: Promise<unknown>[];
  readonly #stores: readonly Store[];
  readonly #timeoutMs: number;
  readonly #parse: (i: number, answer: NodeAnswer) => T;
  readonly #enough: (heard: readonly (T | undefined)[]) => boolean;
  readonly #hurry: ((heard: readonly (T | undefined)[]) => boolean) | undefined;
  readonly #answered: boolean[];
  #left: number;
  #decide!: (snapshot: (T | undefined)[]) => void;
  #done = false;
  #deadline: Deadline | undefined;
  readonly #startedAt: number;
  #hurryTimer: NodeJS.Timeout | undefined;

  constructor(
    stores: readonly Store[],
    script: Script,
    keys: readonly string[],
    args: readonly ScriptArg[],
    timeoutMs: number,
    parse: (i: number, answer: NodeAnswer) => T,
    enough: (heard: readonly (T | undefined)[]) => boolean,
    hurry: ((heard: readonly (T | undefined)[]) => boolean) | undefined,
  ) {
    const n = stores.length;
    this.#stores = stores;
    this.#timeoutMs = timeoutMs;
    this.#parse = parse;
    this.#enough = enough;
    this.#hurry = hurry;
    this.heard = new Array(n).fill(undefined);
    this.#answered = new Array(n).fill(false);
    this.#left = n;
    this.#startedAt = hurry ? performance.now() : 0;
    this.decided = new Promise<(T | undefined)[]>((resolve) => {
      this.#decide = resolve;
    });
    const raw: Promise<unknown>[] = new Array(n);
    for (let i = 0; i < n; i++) {
      let request: Promise<unknown>;
      try {
        request = stores[i]!.run(script, keys, args);
      } catch (err) {
        request = Promise.reject(err);
      }
      request.then(
        (value) => this.#settle(i, { ok: true, value }),
        (error: unknown) =>
          this.#settle(i, { ok: false, error: error instanceof Error ? error : new Error(String(error)) }),
      );
      raw[i] = request;
    }
    this.raw = raw;
    if (n === 0) this.#decide([]);
    else this.#deadline = deadlinesOf(timeoutMs).add(() => this.#timedOut());
  }

  #settle(i: number, answer: NodeAnswer): void {
    if (this.#answered[i]) return;
    this.#answered[i] = true;
    this.heard[i] = this.#parse(i, answer);
    this.#left -= 1;
    if (this.#left === 0) this.#deadline?.cancel();
    if (this.#done) return;
    if (this.#left === 0 || this.#enough(this.heard)) {
      this.#done = true;
      clearTimeout(this.#hurryTimer);
      this.#decide(this.heard.slice());
    } else if (this.#hurry && this.#hurryTimer === undefined && this.#hurry(this.heard)) {
      const tookMs = performance.now() - this.#startedAt;
      const waitMs = Math.max(this.#timeoutMs / SPLIT_WAIT_PARTS, tookMs);
      if (tookMs + waitMs < this.#timeoutMs)
        this.#hurryTimer = setTimeout(() => this.#cutShort(Math.round(tookMs + waitMs)), waitMs);
    }
  }

  /** The node timeout: every node still out is unavailable. */
  #timedOut(): void {
    const within = `the ${this.#timeoutMs} ms node timeout`;
    for (let i = 0; i < this.#stores.length; i++) this.#settle(i, noReply(this.#stores[i]!.name, within));
  }

  // The split's decision: the nodes still out count as unavailable in it. Their answers still land in `heard`
  // (a failed attempt names what they said), and the node timeout still ends the wait for them.
  #cutShort(ms: number): void {
    if (this.#done) return;
    this.#done = true;
    const after = `${ms} ms, after a split`;
    this.#decide(
      this.heard.map((h, i) =>
        this.#answered[i] ? h : this.#parse(i, noReply(this.#stores[i]!.name, after)),
      ),
    );
  }
}

/** The node timeouts' queues, one per duration (a few: the default follows the TTL): no timer per fan-out. */
const queues = new Map<number, Deadlines>();
function deadlinesOf(ms: number): Deadlines {
  let q = queues.get(ms);
  if (!q) {
    if (queues.size >= 64) queues.clear(); // many TTLs: start over (a queue's own timer finishes its work)
    q = new Deadlines(ms, { ref: true });
    queues.set(ms, q);
  }
  return q;
}

export type Status = NodeOutcome['status'];
export type Parsed = { status: Status; value?: number; cause?: Error };

/** How many results have `status` (undefined: how many nodes have not answered). */
export function count(results: readonly (Parsed | undefined)[], status: Status | undefined): number {
  let n = 0;
  for (const r of results) if (status === undefined ? r === undefined : r?.status === status) n++;
  return n;
}

export function unexpected(store: Store, what: string, reply: unknown): Parsed {
  return {
    status: 'unreachable',
    cause: new OncelyError(`${store.name}: unexpected ${what} reply ${JSON.stringify(reply)}`),
  };
}

/** ACQUIRE's reply on one node: ok with the fence, or taken with the holder's remaining ms. */
export function parseAcquire(store: Store, a: NodeAnswer): Parsed {
  if (!a.ok) return { status: 'unreachable', cause: a.error };
  try {
    const r = ACQUIRE.parse(a.value, store.name);
    return r.kind === 'acquired'
      ? { status: 'ok', value: r.fence }
      : { status: 'taken', value: r.remainingMs };
  } catch (err) {
    return { status: 'unreachable', cause: err as Error };
  }
}

/** 1 → ok, -1 → taken, 0 → expired: the reply of EXTEND and RELEASE. */
export function parseTriState(store: Store, what: string, a: NodeAnswer): Parsed {
  if (!a.ok) return { status: 'unreachable', cause: a.error };
  const r = ownerReply(a.value);
  if (r === 'ours') return { status: 'ok' };
  if (r === 'theirs') return { status: 'taken' };
  if (r === 'gone') return { status: 'expired' };
  return unexpected(store, what, a.value);
}

/** True when a failed request may have been applied (a timeout, or a StoreError that says so). */
export function isAmbiguous(err: unknown): boolean {
  return !(err instanceof StoreError) || err.ambiguous;
}
