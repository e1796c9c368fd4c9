/**
 * Talking to several independent stores at once (Redlock, leader election over a Redlock): one script on every
 * node, each bounded by a per-node timeout, answers collected as they come, and the per-node reply parsers.
 */
import { type NodeOutcome, OncelyError, StoreError, StoreUnavailableError } from './errors.js';
import { ownerReply, type Script } from './scripts.js';
import type { ScriptArg, Store } from './transport/types.js';

export const MAX_NODE_TIMEOUT_MS = 60_000;

/** The default per-node timeout for a TTL: a tenth of it, within [10, 1000] ms. */
export function defaultNodeTimeoutMs(ttlMs: number): number {
  return Math.min(1000, Math.max(10, Math.round(ttlMs / 10)));
}

// ------------------------------------------------------------------------------------------- fan-out

/** One node's answer: its reply, or the error it failed with (a StoreError, or the per-node timeout). */
export type NodeAnswer = { ok: true; value: unknown } | { ok: false; error: Error };

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
        const timer = setTimeout(
          () =>
            resolve({
              ok: false,
              error: new StoreUnavailableError(`${name}: no reply within the ${timeoutMs} ms node timeout`, {
                store: name,
                ambiguous: true,
              }),
            }),
          timeoutMs,
        );
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

/**
 * Resolves with a snapshot of the results as soon as `enough(results)` holds after a task settles, or when
 * every task has settled. Unsettled tasks are `undefined` in the snapshot and keep running.
 */
export function until<T>(
  tasks: readonly Promise<T>[],
  enough: (results: readonly (T | undefined)[]) => boolean,
): Promise<(T | undefined)[]> {
  return new Promise((resolve) => {
    const results: (T | undefined)[] = tasks.map(() => undefined);
    let left = tasks.length;
    let done = false;
    if (left === 0) resolve(results);
    tasks.forEach((task, i) => {
      void task.then((value) => {
        if (done) return;
        results[i] = value;
        left -= 1;
        if (left === 0 || enough(results)) {
          done = true;
          resolve([...results]);
        }
      });
    });
  });
}

export type Status = NodeOutcome['status'];
export type Parsed = { status: Status; value?: number; cause?: Error };

export function count(results: readonly (Parsed | undefined)[], status: Status | undefined): number {
  return results.filter((r) => (status === undefined ? r === undefined : r?.status === status)).length;
}

export function unexpected(store: Store, what: string, reply: unknown): Parsed {
  return {
    status: 'unreachable',
    cause: new OncelyError(`${store.name}: unexpected ${what} reply ${JSON.stringify(reply)}`),
  };
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
