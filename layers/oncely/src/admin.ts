/**
 * What an operator can see and clear (the `oncely` CLI is a thin layer over these): a lock's state, a stuck
 * lock forced free, a run-once record found from its raw idempotency key (digested as withOnce does), a record
 * forgotten so its event can run again, a namespace's records listed with SCAN on every master, and who leads
 * an election. Nothing here returns or prints an owner token, a payload or a result.
 */
import { OncelyError } from './errors.js';
import { type LeaderInfo, observeLeader } from './leader.js';
import { createLock, type LockStatus } from './lock.js';
import { Records } from './once/record.js';
import {
  type ForceReleaseReply,
  type ForgetReply,
  LOCK_FORCE_RELEASE,
  ONCE_FORGET,
  ONCE_INSPECT,
} from './scripts.js';
import type { Store } from './transport/types.js';
import { oneOf, prefixProblems, resolveOptions, wholeProblems } from './validate.js';

export interface RecordInfo {
  /** The record's Redis key: `<prefix>:once:{<namespace>:<keyDigest>}:rec`. */
  readonly redisKey: string;
  readonly keyDigest: string;
  readonly status: 'in-progress' | 'completed';
  readonly fence: number;
  /** Since the record was claimed, by the store's clock (a fence is at least the claim's time in ms). */
  readonly ageMs: number | null;
  /** What is left of the lease (in progress) or of the retention (completed). */
  readonly remainingMs: number;
  /** The payload hash the record was claimed with ('' when the payload is not checked). */
  readonly payloadHash: string;
  /** Bytes of the stored result's JSON (completed; 0 for undefined), else null. */
  readonly resultBytes: number | null;
}

/** The fence counter hands out max(last + 1, time in ms): a fence this large is (at least) its claim's time. */
const TIME_FENCE = 1_000_000_000_000;

/** A record's state (ONCE_INSPECT.parse) as an operator reads it, or null when there is none. */
function recordInfo(redisKey: string, reply: unknown): RecordInfo | null {
  const r = ONCE_INSPECT.parse(reply);
  if (!r.found) return null;
  return {
    redisKey,
    keyDigest: /\{[^}]*:([^:}]+)\}:rec$/.exec(redisKey)?.[1] ?? '',
    status: r.status,
    fence: r.fence,
    ageMs: r.nowMs > 0 && r.fence >= TIME_FENCE ? Math.max(0, r.nowMs - r.fence) : null,
    remainingMs: r.remainingMs,
    payloadHash: r.payloadHash,
    // the stored form is a one-character tag ('j', 'm' or 'u') before the JSON
    resultBytes: r.status === 'completed' ? Math.max(0, r.storedBytes - 1) : null,
  };
}

export interface RecordScope {
  /** @default 'oncely' */
  readonly prefix?: string;
  readonly namespace: string;
}

/** The most SCAN pages may ask for, and records a list may return. */
const MAX_PAGE = 1_000_000;

const scopeProblems = (o: RecordScope) => [
  ...prefixProblems('prefix', o.prefix),
  ...prefixProblems('namespace', o.namespace),
];

/** A record scope resolved over its default prefix, every problem named in one ValidationError. */
function resolveScope(scope: RecordScope, what: string) {
  return resolveOptions(scope, { prefix: 'oncely' }, scopeProblems, what, { namespace: true });
}

/** List options resolved over their defaults, every problem named in one ValidationError. */
function resolveList(options: ListOptions) {
  return resolveOptions(
    options,
    { prefix: 'oncely', limit: 50, pageSize: 500 },
    (o) => [
      ...scopeProblems(o),
      ...wholeProblems('limit', o.limit, 0, MAX_PAGE),
      ...wholeProblems('pageSize', o.pageSize, 1, MAX_PAGE),
      ...oneOf('status', o.status, ['in-progress', 'completed']),
    ],
    'listRecords',
    { namespace: true, status: true },
  );
}

/** The record of a raw idempotency key, or null when there is none. */
export async function inspectRecord(
  store: Store,
  scope: RecordScope,
  key: string,
): Promise<RecordInfo | null> {
  const { prefix, namespace } = resolveScope(scope, 'inspectRecord');
  const [rec, fence] = new Records(prefix, namespace).keysOf(key);
  return recordInfo(rec, await store.run(ONCE_INSPECT, [rec, fence], []));
}

export type ForgetResult = ForgetReply;

/**
 * Deletes the record of a raw idempotency key so its event can run again. With `fence`, only while the record
 * still holds that fence (the one the operator was shown): 'changed' when someone claimed since.
 */
export async function forgetRecord(
  store: Store,
  scope: RecordScope,
  key: string,
  fence?: number,
): Promise<ForgetResult> {
  const { prefix, namespace } = resolveScope(scope, 'forgetRecord');
  const [rec] = new Records(prefix, namespace).keysOf(key);
  return ONCE_FORGET.parse(await store.run(ONCE_FORGET, [rec], [fence === undefined ? '' : String(fence)]));
}

export interface ListOptions extends RecordScope {
  readonly status?: 'in-progress' | 'completed';
  /** Most records returned (all are counted). @default 50 */
  readonly limit?: number;
  /** SCAN's COUNT hint per page. @default 500 */
  readonly pageSize?: number;
}

export interface RecordList {
  /** Records of the namespace (with the status asked for), all of them. */
  readonly count: number;
  /** The first `limit` of them. */
  readonly records: readonly RecordInfo[];
}

/** Glob characters of a SCAN MATCH pattern, escaped. */
const globEscape = (text: string) => text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);

/**
 * Lists a namespace's records: SCAN on every master (a cluster's records sit on different masters, by their
 * hash tags), then each page's records inspected in one round trip. Needs a store with `scan` (every built-in
 * transport has it).
 */
export async function listRecords(store: Store, options: ListOptions): Promise<RecordList> {
  const { prefix, namespace, limit, pageSize, status } = resolveList(options);
  if (!store.scan) throw new OncelyError(`${store.name}: this store cannot SCAN`);
  const match = `${globEscape(prefix)}:once:{${globEscape(namespace)}:*}:rec`;
  const seen = new Set<string>();
  const records: RecordInfo[] = [];
  let count = 0;
  for await (const page of store.scan(match, pageSize)) {
    const fresh = page.filter((k) => !seen.has(k));
    for (const k of fresh) seen.add(k);
    if (fresh.length === 0) continue;
    const replies = await store.runMany(
      fresh.map((k) => ({ script: ONCE_INSPECT, keys: [k, k.replace(/:rec$/, ':fence')], args: [] })),
    );
    replies.forEach((r, i) => {
      if (!r.ok) throw r.error;
      const info = recordInfo(fresh[i]!, r.value);
      if (!info || (status && info.status !== status)) return; // gone since the scan
      count++;
      if (records.length < limit) records.push(info);
    });
  }
  return { count, records };
}

/** A lock's state (held, remaining ms, fence): never its token. */
export function lockStatus(store: Store, name: string, prefix = 'oncely'): Promise<LockStatus> {
  return createLock(store, { prefix }).status(name);
}

export type ForceReleaseResult = ForceReleaseReply;

/**
 * Deletes a stuck lock without its token. With `fence`, only while it is held under that fence (the one the
 * operator was shown): 'changed' when a new holder took it since. The fence counter stays.
 */
export async function forceRelease(
  store: Store,
  name: string,
  fence?: number,
  prefix = 'oncely',
): Promise<ForceReleaseResult> {
  const lock = createLock(store, { prefix });
  const reply = await store.run(
    LOCK_FORCE_RELEASE,
    [lock.keyOf(name), lock.fenceKeyOf(name)],
    [fence === undefined ? '' : String(fence)],
  );
  return LOCK_FORCE_RELEASE.parse(reply);
}

/** Who leads election `name`: id, term and time left; null when nobody does. */
export function leaderOf(store: Store, name: string, prefix = 'oncely'): Promise<LeaderInfo | null> {
  return observeLeader(createLock(store, { prefix }), name);
}
