import { StoreUnavailableError } from '../../layers/oncely/src/errors.js';
import { ACQUIRE, EXTEND, RELEASE, type Script } from '../../layers/oncely/src/scripts.js';
import type { CallResult, ScriptArg, ScriptCall, Store } from '../../layers/oncely/src/transport/types.js';

/**
 * A recording in-memory store for timing and error-path unit tests. It implements the lock scripts' semantics
 * (not their Lua) against a clock you control, and lets a test make the next calls hang or fail.
 * Behaviour is always also tested against real servers (test/integration).
 */
export class FakeStore implements Store {
  readonly kind = 'redis' as const;
  readonly name = 'fake';
  readonly calls: { script: string; keys: readonly string[]; args: readonly ScriptArg[] }[] = [];
  readonly data = new Map<string, { value: string; expiresAt?: number }>();
  /** Queue of behaviours for the next calls: 'hang' never settles, an Error rejects, 'ok' runs normally. */
  readonly next: ('hang' | 'ok' | Error | 'apply-then-fail')[] = [];
  constructor(readonly now: () => number = () => Date.now()) {}

  get(key: string): string | undefined {
    const e = this.data.get(key);
    if (!e) return undefined;
    if (e.expiresAt !== undefined && e.expiresAt <= this.now()) {
      this.data.delete(key);
      return undefined;
    }
    return e.value;
  }

  async run(script: Script, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
    this.calls.push({ script: script.name, keys, args });
    const behaviour = this.next.shift() ?? 'ok';
    if (behaviour === 'hang') return new Promise(() => {});
    if (behaviour instanceof Error) throw behaviour;
    const result = this.apply(script, keys, args);
    if (behaviour === 'apply-then-fail') {
      throw new StoreUnavailableError('fake: reply lost', { store: 'fake', ambiguous: true });
    }
    return result;
  }

  runMany(calls: readonly ScriptCall[]): Promise<CallResult[]> {
    return runEach(this, calls);
  }

  async close(): Promise<void> {}

  private apply(script: Script, keys: readonly string[], args: readonly ScriptArg[]): unknown {
    const [k1, k2] = keys as [string, string];
    const token = String(args[0]);
    const cur = this.get(k1);
    if (script === ACQUIRE) {
      const ttl = Number(args[1]);
      if (cur === token) {
        this.data.set(k1, { value: token, expiresAt: this.now() + ttl });
        return [1, Number(this.get(k2) ?? 0)];
      }
      if (cur !== undefined) return [0, Math.max(0, (this.data.get(k1)?.expiresAt ?? 0) - this.now())];
      // fence = max(last + 1, time floor): the fake's floor is 0, so its fences count 1, 2, 3…
      const fence = Number(this.get(k2) ?? 0) + 1;
      const fenceTtl = args[2] === undefined ? undefined : Number(args[2]);
      this.data.set(k2, { value: String(fence), expiresAt: fenceTtl && this.now() + fenceTtl });
      this.data.set(k1, { value: token, expiresAt: this.now() + ttl });
      return [1, fence];
    }
    if (script === EXTEND) {
      if (cur === token) {
        this.data.set(k1, { value: token, expiresAt: this.now() + Number(args[1]) });
        return 1;
      }
      return cur === undefined ? 0 : -1;
    }
    if (script === RELEASE) {
      if (cur === token) {
        this.data.delete(k1);
        return 1;
      }
      return cur === undefined ? 0 : -1;
    }
    throw new Error(`fake store does not implement script ${script.name}`);
  }
}

/** A fake batch: each call through `store.run`, in order, one result per call. */
export async function runEach(
  store: Pick<Store, 'run'>,
  calls: readonly ScriptCall[],
): Promise<CallResult[]> {
  const out: CallResult[] = [];
  for (const c of calls) {
    try {
      out.push({ ok: true, value: await store.run(c.script, c.keys, c.args) });
    } catch (error) {
      out.push({ ok: false, error: error as Error });
    }
  }
  return out;
}
