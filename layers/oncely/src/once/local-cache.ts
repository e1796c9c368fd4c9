/**
 * The opt-in local cache (`localCache`): a bounded LRU of COMPLETED records in this container, as Powertools'
 * `useLocalCache`. A duplicate whose record is cached is answered with no round trip. Only completed records go
 * in (never one in progress), each for at most `ttlMs` and never past the record's own retention: an entry
 * expires no later than the record in Redis does. What is kept is the stored text, decoded afresh per hit, so
 * a caller can never change what the next duplicate gets.
 */
import type { Clock } from '../clock.js';
import { fieldsOf, MAX_TTL_MS, resolveOptions, unknownProblems, wholeProblems } from '../validate.js';

export interface LocalCacheOptions {
  /**
   * Most records kept; the least recently used goes first.
   * @default 256
   */
  maxEntries?: number;
  /**
   * Longest an entry is kept (never past the record's retention in the store).
   * @default 60_000
   */
  ttlMs?: number;
}

export const LOCAL_CACHE_DEFAULTS = Object.freeze({ maxEntries: 256, ttlMs: 60_000 });
/** The largest `maxEntries` (a cache is per container: bounded memory). */
export const MAX_LOCAL_CACHE_ENTRIES = 1_000_000;

/** Everything wrong with a `localCache` option: true, false or LocalCacheOptions. */
export function localCacheProblems(v: unknown): string[] {
  if (v === true || v === false) return [];
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return ['localCache must be true, false or { maxEntries?, ttlMs? }'];
  const c = v as Record<string, unknown>;
  return [
    ...unknownProblems(c, LOCAL_CACHE_DEFAULTS).map((p) => `localCache: ${p}`),
    ...(c.maxEntries === undefined
      ? []
      : wholeProblems('localCache.maxEntries', c.maxEntries, 1, MAX_LOCAL_CACHE_ENTRIES)),
    ...(c.ttlMs === undefined ? [] : wholeProblems('localCache.ttlMs', c.ttlMs, 1, MAX_TTL_MS, 'ms')),
  ];
}

/** The local cache a checked `localCache` option asks for, or undefined when it is off. */
export function localCacheOf(o: {
  localCache: boolean | LocalCacheOptions;
  clock: Clock;
}): LocalCache | undefined {
  if (o.localCache === false) return undefined;
  // Checked with the other withOnce options (localCacheProblems): here only merged over the defaults.
  const given = o.localCache === true ? {} : o.localCache;
  const c = resolveOptions(
    given,
    LOCAL_CACHE_DEFAULTS,
    () => [],
    'localCache',
    fieldsOf(LOCAL_CACHE_DEFAULTS),
  );
  return new LocalCache(c.maxEntries, c.ttlMs, o.clock);
}

interface Entry {
  /** The payload hash the record was made with ('' when unchecked). */
  readonly hash: string;
  /** The stored (encoded) result, as the store returns it. */
  readonly text: unknown;
  /** On the engine's monotonic clock. */
  readonly expiresAt: number;
}

export class LocalCache {
  readonly #entries = new Map<string, Entry>();

  constructor(
    readonly maxEntries: number,
    readonly ttlMs: number,
    readonly clock: Clock,
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  /**
   * The stored text of `key`'s completed record, when cached, unexpired and made for the same payload hash
   * (anything else is a miss: the store decides, as it would without a cache).
   */
  get(key: string, hash: string): { text: unknown } | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.clock.now() >= entry.expiresAt) {
      this.#entries.delete(key);
      return undefined;
    }
    if (entry.hash !== hash) return undefined;
    // Most recently used goes last.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return { text: entry.text };
  }

  /** After a claim: keeps the record when the claim found it completed (`done`), forgets the key otherwise. */
  remember(
    key: string,
    hash: string,
    done: { text: unknown; leftMs?: number } | undefined,
    sentAt: number,
  ): void {
    if (done?.leftMs === undefined) this.delete(key);
    else this.put(key, hash, done.text, sentAt, done.leftMs);
  }

  /**
   * Keeps a completed record: `sentAt` (engine clock) is when the request that found or wrote it was sent, and
   * `leftMs` how long the record lives from then at least (its retention, or the PTTL the store reported).
   */
  put(key: string, hash: string, text: unknown, sentAt: number, leftMs: number): void {
    if (!(leftMs > 0)) return;
    const expiresAt = sentAt + Math.min(this.ttlMs, leftMs);
    if (expiresAt <= this.clock.now()) return;
    this.#entries.delete(key);
    this.#entries.set(key, { hash, text, expiresAt });
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  /** Forgets `key` (its record is no longer known to be completed). */
  delete(key: string): void {
    this.#entries.delete(key);
  }
}
