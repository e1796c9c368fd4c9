import { StoreUnavailableError } from '../../layers/oncely/src/errors.js';
import {
  ONCE_CLAIM,
  ONCE_CLAIM_MANY,
  ONCE_COMPLETE,
  ONCE_COMPLETE_MANY,
  ONCE_EXTEND,
  ONCE_RELEASE,
  type Script,
} from '../../layers/oncely/src/scripts.js';
import type { CallResult, ScriptArg, ScriptCall, Store } from '../../layers/oncely/src/transport/types.js';

type Entry = { value: string | Map<string, string>; expiresAt?: number };
export type Behaviour = 'hang' | 'ok' | Error | 'apply-then-fail';

/**
 * A recording in-memory store for run-once unit tests (timing and error paths): it implements the ONCE_* scripts'
 * semantics (not their Lua) against a clock you control. The Lua itself runs in test/integration, on real servers.
 *
 * `roundTrips` counts requests (a runMany is one); `calls` lists every script call in order; `next` queues
 * behaviours for the next requests: 'hang' never settles, an Error rejects, 'apply-then-fail' applies and then
 * loses the reply (an ambiguous failure).
 */
export class OnceFakeStore implements Store {
  readonly kind = 'redis' as const;
  readonly name = 'fake';
  readonly calls: { script: string; keys: readonly string[]; args: readonly ScriptArg[]; at: number }[] = [];
  readonly data = new Map<string, Entry>();
  readonly next: Behaviour[] = [];
  roundTrips = 0;
  /** Set to make every request fail until cleared (the store is down). */
  down: Error | undefined;
  constructor(readonly now: () => number = () => Date.now()) {}

  script(name: string): number {
    return this.calls.filter((c) => c.script === name).length;
  }

  #live(key: string): Entry | undefined {
    const e = this.data.get(key);
    if (e?.expiresAt !== undefined && e.expiresAt <= this.now()) {
      this.data.delete(key);
      return undefined;
    }
    return e;
  }
  hash(key: string): Map<string, string> | undefined {
    const e = this.#live(key);
    return e && typeof e.value !== 'string' ? e.value : undefined;
  }
  string(key: string): string | undefined {
    const e = this.#live(key);
    return e && typeof e.value === 'string' ? e.value : undefined;
  }
  pttl(key: string): number {
    const e = this.#live(key);
    if (!e) return -2;
    return e.expiresAt === undefined ? -1 : e.expiresAt - this.now();
  }
  #expire(key: string, ms: ScriptArg): void {
    const e = this.#live(key);
    if (e) e.expiresAt = this.now() + Number(ms);
  }

  async #request<T>(work: () => T): Promise<T> {
    this.roundTrips += 1;
    const behaviour = this.down ?? this.next.shift() ?? 'ok';
    if (behaviour === 'hang') return new Promise<T>(() => {});
    if (behaviour instanceof Error) throw behaviour;
    const result = work();
    if (behaviour === 'apply-then-fail') {
      throw new StoreUnavailableError('fake: reply lost', { store: 'fake', ambiguous: true });
    }
    return result;
  }

  run(script: Script, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
    return this.#request(() => this.apply(script, keys, args));
  }

  runMany(calls: readonly ScriptCall[]): Promise<CallResult[]> {
    return this.#request(() =>
      calls.map((c): CallResult => {
        try {
          return { ok: true, value: this.apply(c.script, c.keys, c.args) };
        } catch (error) {
          return { ok: false, error: error as Error };
        }
      }),
    );
  }

  async close(): Promise<void> {}

  apply(script: Script, keys: readonly string[], args: readonly ScriptArg[]): unknown {
    // A batch's merged claims and completions: each record as its own script would go (and is listed in
    // `calls` as that script), in order.
    if (script === ONCE_CLAIM_MANY || script === ONCE_COMPLETE_MANY) {
      const claim = script === ONCE_CLAIM_MANY;
      const shared = args.slice(0, claim ? 3 : 2);
      const own = claim ? 2 : 4;
      const out: unknown[] = [];
      for (let i = 0; i < keys.length / 2; i++) {
        const a = args.slice(shared.length + i * own, shared.length + (i + 1) * own);
        const pair = keys.slice(2 * i, 2 * i + 2);
        out.push(
          claim
            ? this.apply(ONCE_CLAIM, pair, [a[0]!, shared[0]!, a[1]!, shared[1]!, shared[2]!])
            : this.apply(ONCE_COMPLETE, pair, [a[0]!, a[1]!, a[2]!, shared[0]!, shared[1]!, a[3]!]),
        );
      }
      return out;
    }
    this.calls.push({ script: script.name, keys, args, at: this.now() });
    const [rec, fenceKey] = keys as [string, string];
    const token = String(args[0]);
    const h = this.hash(rec);
    if (script === ONCE_CLAIM) {
      const [, ttlMs, hash, fenceTtlMs, nowMs] = args.map(String) as [string, string, string, string, string];
      if (h) {
        if (h.get('t') === token && h.get('s') === 'P') {
          this.#expire(rec, ttlMs);
          return [1, h.get('f')];
        }
        const stored = h.get('h') ?? '';
        if (hash !== '' && stored !== '' && stored !== hash) return [3, h.get('s')];
        if (h.get('s') === 'C') return [2, h.get('r'), this.pttl(rec)];
        return [0, this.pttl(rec)];
      }
      const fence = String(Math.max(Number(this.string(fenceKey) ?? '0') + 1, Number(nowMs)));
      this.data.set(fenceKey, { value: fence, expiresAt: this.now() + Number(fenceTtlMs) });
      this.data.set(rec, {
        value: new Map([
          ['s', 'P'],
          ['t', token],
          ['f', fence],
          ['h', hash],
        ]),
        expiresAt: this.now() + Number(ttlMs),
      });
      return [1, fence];
    }
    if (script === ONCE_COMPLETE) {
      const [, fence, result, retentionMs, fenceTtlMs, hash] = args.map(String) as string[];
      if (h?.get('t') === token) {
        if (h.get('s') === 'C') return 2;
        h.set('s', 'C');
        h.set('r', result!);
        this.#expire(rec, retentionMs!);
        this.#expire(fenceKey, fenceTtlMs!);
        return 1;
      }
      if (h) return -1;
      if (this.string(fenceKey) !== fence) return 0;
      this.data.set(rec, {
        value: new Map([
          ['s', 'C'],
          ['t', token],
          ['f', fence!],
          ['h', hash!],
          ['r', result!],
        ]),
        expiresAt: this.now() + Number(retentionMs),
      });
      this.#expire(fenceKey, fenceTtlMs!);
      return 3;
    }
    if (script === ONCE_EXTEND) {
      if (h?.get('t') === token && h.get('s') === 'P') {
        this.#expire(rec, args[1]!);
        this.#expire(fenceKey, args[2]!);
        return 1;
      }
      return h ? -1 : 0;
    }
    if (script === ONCE_RELEASE) {
      if (h?.get('t') === token && h.get('s') === 'P') {
        this.data.delete(rec);
        return 1;
      }
      return h ? -1 : 0;
    }
    throw new Error(`fake store does not implement script ${script.name}`);
  }
}
