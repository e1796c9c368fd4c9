import type { Redis as UpstashRedis } from '@upstash/redis';
import { redact, StoreAuthError, StoreError, StoreUnavailableError } from '../errors.js';
import { callsMismatch, keysMismatch, type Script, takesKeys } from '../scripts/script.js';
import type { UpstashSettings } from './options.js';
import { type ReplicaWait, replicaWait } from './replicas.js';
import type { CallResult, ScriptArg, ScriptCall, Store } from './types.js';
import { evalWithFallback, runManyWithFallback, settle } from './types.js';
import { type CallDeadline, callDeadline } from './upstash.js';
import type * as UpstashHttp from './upstash-http.js';
import { appendCommand, type Reply, RestReplicas, withWait } from './upstash-replicas.js';

/** Network error codes that prove the request never reached the server. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * upstashStore's Store (upstash.ts), built when this chunk has loaded: the client is built on first use around
 * oncely's requester (`http`: upstash-http.ts, loading beside this chunk since the store was created).
 */
export function requesterStore(settings: UpstashSettings, http: Promise<typeof UpstashHttp>): Store {
  const { name, secrets } = settings;
  const { url, token, timeoutMs, maxConnections, base64 } = settings.options;
  const slots = new RequestSlots(maxConnections);
  const origin = new URL(url);
  let ready: UpstashRedis | undefined;
  let pending: Promise<{ redis: UpstashRedis; close(): void }> | undefined;
  const connect = async () => {
    pending ??= http.then(({ rawClient }) => rawClient(origin, token, slots, { name, timeoutMs, base64 }));
    ready = (await pending).redis;
    return ready;
  };
  return clientStore(() => ready ?? connect(), {
    name,
    secrets,
    timeoutMs,
    slots,
    replicas: replicaWait(settings.options, timeoutMs),
    async close() {
      (await pending?.catch(() => undefined))?.close();
    },
  });
}

/** Most calls of one tick in one coalesced `/pipeline` request. */
export const BATCH_CALLS = 32;
/** Most calls in one request when they waited for a free connection (RequestSlots). */
export const BACKLOG_CALLS = 128;

interface Pending extends ScriptCall {
  /** When the call was made (performance.now()): its deadline is this plus timeoutMs. */
  readonly startedAt: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** Calls `request` (one client command or pipeline exec) with `call` as the deadline its requester sees. */
function sendWithin<C, T>(
  client: C,
  call: CallDeadline | undefined,
  request: (c: C) => Promise<T>,
): Promise<T> {
  callDeadline.current = call;
  try {
    return request(client);
  } finally {
    callDeadline.current = undefined;
  }
}

/**
 * The one REST Store, over an `@upstash/redis` client that returns raw replies: single calls as EVALSHA
 * (EVAL on NOSCRIPT, transport/types.ts), batches through the client's pipeline (`/pipeline`, a reply or an
 * error per call). `client` is called per request: upstashStore creates its client on first use.
 * Errors the client's requester throws as StoreErrors pass through; the client's own errors are mapped here,
 * with `secrets` removed from every message.
 */
export function clientStore(
  client: () => UpstashRedis | Promise<UpstashRedis>,
  opts: {
    name: string;
    secrets?: readonly (string | undefined)[];
    close?: () => Promise<void>;
    /**
     * Bounds each call as a whole (see callDeadline). Unset for a client you handed in: its own `signal`
     * governs each of its requests.
     */
    timeoutMs?: number;
    /** The requester's bound on requests in flight: calls are held back while every slot is busy. */
    slots?: RequestSlots;
    /** The replica wait (replicas.ts), checked already; none: grants do not wait. */
    replicas?: ReplicaWait;
  },
): Store {
  const { name, secrets = [], timeoutMs, slots } = opts;
  /** A call's deadline (see callDeadline) when this store has a timeoutMs. */
  const deadlineFrom = (startedAt: number): CallDeadline | undefined =>
    timeoutMs === undefined ? undefined : { startedAt };
  const fresh = () => deadlineFrom(performance.now());

  const mapError = (err: unknown): Error => {
    if (err instanceof StoreError) return err;
    const e = err instanceof Error ? err : new Error(String(err));
    const cause = (e as { cause?: { code?: string } }).cause;
    // The client appends the request body to HTTP errors: never part of ours.
    const text = redact(e.message.replace(/, command was: [\s\S]*$/, ''), secrets);
    if (e.name === 'TimeoutError' || e.name === 'AbortError') {
      return new StoreUnavailableError(`${name}: no reply in time`, { store: name, ambiguous: true });
    }
    if (/unauthori[sz]ed|WRONGPASS|NOAUTH|invalid.*token/i.test(text)) {
      return new StoreAuthError(`${name}: authentication failed`, { store: name, ambiguous: false });
    }
    if (e.name === 'TypeError' || cause?.code) {
      const code = cause?.code ?? 'network error';
      return new StoreUnavailableError(`${name}: unreachable (${code})`, {
        store: name,
        ambiguous: !NOT_SENT.has(code),
      });
    }
    // A Redis error reply (NOSCRIPT, WRONGTYPE, …): the command did not run.
    return new StoreError(`${name}: ${text}`, { store: name, ambiguous: false });
  };

  /** EVALSHA and EVAL of one call, sent within its deadline. */
  const scriptsOf = (call: CallDeadline | undefined) => ({
    evalsha: async (sha: string, keys: readonly string[], args: readonly ScriptArg[]) =>
      sendWithin(await client(), call, (c) => c.evalsha(sha, [...keys], [...args])),
    evalLua: async (lua: string, keys: readonly string[], args: readonly ScriptArg[]) =>
      sendWithin(await client(), call, (c) => c.eval(lua, [...keys], [...args])),
  });

  const replicas =
    opts.replicas && opts.replicas.replicas !== 0
      ? new RestReplicas(opts.replicas, async () =>
          sendWithin(await client(), fresh(), (c) => c.exec(['INFO', 'replication'])),
        )
      : undefined;

  /** Calls in one `/pipeline` request, with the replica wait (upstash-replicas.ts withWait). */
  const pipeline = (call: CallDeadline | undefined, calls: readonly ScriptCall[], useLua: boolean) =>
    withWait(replicas, calls, {
      store: name,
      waitMs: () => replicas?.waitMs(call?.startedAt ?? performance.now(), timeoutMs) ?? 0,
      settle: (r) => settle(r.result ?? null, r.error ? new Error(r.error) : undefined, mapError),
      exec: async (before, after) => {
        const p = (await client()).pipeline();
        for (const c of before) appendCommand(p, c);
        for (const c of after ? calls : []) {
          if (useLua) p.eval(c.script.lua, [...c.keys], [...c.args]);
          else p.evalsha(c.script.sha1, [...c.keys], [...c.args]);
        }
        if (after && after.length > 0) appendCommand(p, after);
        return (await sendWithin(p, call, (q) => q.exec({ keepErrors: true }))) as Reply[];
      },
    });

  const runBatch = async (
    calls: readonly ScriptCall[],
    call: CallDeadline | undefined = fresh(),
  ): Promise<CallResult[]> => {
    if (calls.length === 0) return [];
    try {
      return await runManyWithFallback(calls, (c, useLua) => pipeline(call, c, useLua));
    } catch (err) {
      throw mapError(err);
    }
  };

  const runOne = async (
    script: Script,
    keys: readonly string[],
    args: readonly ScriptArg[],
    call: CallDeadline | undefined,
  ) => {
    const { evalsha, evalLua } = scriptsOf(call);
    try {
      return await evalWithFallback(script, keys, args, evalsha, evalLua);
    } catch (err) {
      throw mapError(err);
    }
  };

  // Calls made in the same tick (concurrent locks, a Promise.all in a handler, workers woken by one reply)
  // share one request: one call goes alone to `/`, several go through the client's pipeline (one round trip,
  // a reply or error per call; a failed request fails each of its calls with the same error).
  // process.nextTick runs once the promise jobs of the current turn have drained, so every caller they wake
  // is in the batch; unlike setImmediate it is not faked by test frameworks' fake timers. A batch that
  // reaches BATCH_CALLS goes at once and the rest of the tick's calls follow in another: the server starts on
  // the first part while the client is still preparing the rest (measured: +40 % pairs/s under 50 workers,
  // docs/benchmarks.md). The client's own auto-pipelining batches over two microtasks, too short a window
  // for callers a reply wakes, and keeps no such bound.
  // While every request slot is busy (a burst, upstashStore's maxConnections), calls stay here and go
  // together, up to BACKLOG_CALLS per request, when a slot frees: fewer, fuller requests for the server
  // instead of a request per tick waiting in line (docs/benchmarks.md, "REST connection pool"). A call still
  // here at its deadline fails as not sent (ambiguous: false).
  let queue: Pending[] = [];
  let expiry: ReturnType<typeof setTimeout> | undefined;
  const send = (batch: Pending[]) => {
    const call = deadlineFrom(batch[0]!.startedAt);
    if (call && slots) call.holdsSlot = true;
    const settled = () => {
      // A request that never reached the requester (the client failed to load) leaves its slot here.
      if (call?.holdsSlot) {
        call.holdsSlot = false;
        slots?.release();
      }
    };
    // A grant that must reach replicas goes as a pipeline (its WAIT right behind it), even alone.
    if (batch.length === 1 && !(batch[0]!.script.grants && replicas?.mayWait)) {
      const p = batch[0]!;
      runOne(p.script, p.keys, p.args, call).then(
        (v) => {
          settled();
          p.resolve(v);
        },
        (err: unknown) => {
          settled();
          p.reject(err);
        },
      );
      return;
    }
    runBatch(batch, call).then(
      (results) => {
        settled();
        results.forEach((r, i) => {
          const p = batch[i]!;
          if (r.ok) p.resolve(r.value);
          else p.reject(r.error);
        });
      },
      (err: unknown) => {
        settled();
        for (const p of batch) p.reject(err);
      },
    );
  };
  const flush = () => {
    if (slots === undefined || timeoutMs === undefined) {
      const batch = queue;
      queue = [];
      if (batch.length > 0) send(batch);
      return;
    }
    clearTimeout(expiry);
    expiry = undefined;
    const now = performance.now();
    let expired = 0;
    while (expired < queue.length && queue[expired]!.startedAt + timeoutMs <= now) expired++;
    if (expired > 0) {
      const error = new StoreUnavailableError(
        `${name}: no connection free within ${timeoutMs} ms (not sent)`,
        { store: name, ambiguous: false },
      );
      for (const p of queue.splice(0, expired)) p.reject(error);
    }
    // A tick's calls go BATCH_CALLS at a time; a backlog (calls that waited for a slot) goes fuller.
    const most = queue.length > BATCH_CALLS ? BACKLOG_CALLS : BATCH_CALLS;
    while (queue.length > 0 && slots.tryTake()) {
      const batch = queue.length <= most ? queue : queue.slice(0, most);
      queue = batch === queue ? [] : queue.slice(most);
      send(batch);
    }
    if (queue.length > 0) {
      // After the sockets are read (see upstash-http.ts): a reply already received frees a slot first.
      expiry = setTimeout(() => setImmediate(flush), queue[0]!.startedAt + timeoutMs - now);
    }
  };
  if (slots)
    slots.onFree = () => {
      if (queue.length > 0) flush();
    };

  return {
    kind: 'upstash',
    name,
    run(script: Script, keys: readonly string[], args: readonly ScriptArg[]) {
      if (!takesKeys(script, keys.length)) return Promise.reject(keysMismatch(script, keys.length));
      return new Promise((resolve, reject) => {
        const n = queue.push({ script, keys, args, startedAt: performance.now(), resolve, reject });
        if (n === 1) process.nextTick(flush);
        else if (n === BATCH_CALLS && (slots === undefined || slots.free)) flush();
      });
    },
    runMany: (calls) => {
      const mismatch = callsMismatch(calls);
      return mismatch ? Promise.reject(mismatch) : runBatch(calls);
    },
    async *scan(match: string, count: number) {
      let cursor = '0';
      do {
        const [next, keys] = await Promise.resolve(client())
          .then((c) => sendWithin(c, fresh(), (r) => r.scan(cursor, { match, count })))
          .catch((err: unknown) => {
            throw mapError(err);
          });
        cursor = String(next);
        if (keys.length > 0) yield keys as string[];
      } while (cursor !== '0');
    },
    async close() {
      replicas?.close();
      await opts.close?.();
    },
  };
}

/**
 * The REST transport's bound on requests in flight to one origin (`upstashStore`'s `maxConnections`): a
 * request is sent only while it holds a slot, so a burst never opens more sockets than there are slots (the
 * keep-alive agent's `maxSockets` is the same number). A request that finds no slot free waits, first come
 * first served; the store (clientStore, above) holds its calls back meanwhile and sends them together when a
 * slot frees, rather than a request per tick waiting in line. Here, not in the client chunk
 * (upstash-http.ts): the store needs it before the client is loaded.
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
