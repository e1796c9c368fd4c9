import { StoreUnavailableError } from '../../layers/oncely/src/errors.js';
import { FENCE_RAISE, type Script } from '../../layers/oncely/src/scripts.js';
import type { CallResult, ScriptArg, ScriptCall, Store } from '../../layers/oncely/src/transport/types.js';
import { FakeStore, runEach } from './fake-store.js';

/**
 * A named fake node for Redlock unit tests: a FakeStore (the lock scripts' semantics) plus FENCE_RAISE, a reply
 * delay, and a `down` switch that makes every call fail at once (connection refused: not ambiguous).
 * Use `inner.next` to make the next calls hang, fail, or apply-then-fail.
 */
export class FakeNode implements Store {
  readonly kind = 'redis' as const;
  readonly inner: FakeStore;
  /** Delay before each reply, in ms (real or fake timers). */
  delayMs = 0;
  down = false;
  constructor(
    readonly name: string,
    now: () => number = () => Date.now(),
  ) {
    this.inner = new FakeStore(now);
  }

  get calls() {
    return this.inner.calls;
  }
  get(key: string): string | undefined {
    return this.inner.get(key);
  }
  set(key: string, value: string): void {
    this.inner.data.set(key, { value });
  }

  async run(script: Script, keys: readonly string[], args: readonly ScriptArg[]): Promise<unknown> {
    if (this.down) {
      this.inner.calls.push({ script: script.name, keys, args });
      throw new StoreUnavailableError(`${this.name}: unreachable (ECONNREFUSED)`, {
        store: this.name,
        ambiguous: false,
      });
    }
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (script === FENCE_RAISE) {
      this.inner.calls.push({ script: script.name, keys, args });
      const behaviour = this.inner.next.shift() ?? 'ok';
      if (behaviour === 'hang') return new Promise(() => {});
      if (behaviour instanceof Error) throw behaviour;
      const key = keys[0]!;
      const next = Math.max(Number(this.get(key) ?? 0), Number(args[0]));
      this.set(key, String(next));
      return next;
    }
    return this.inner.run(script, keys, args);
  }

  runMany(calls: readonly ScriptCall[]): Promise<CallResult[]> {
    return runEach(this, calls);
  }

  async close(): Promise<void> {}
}

export function fakeNodes(n: number, now?: () => number): FakeNode[] {
  return Array.from({ length: n }, (_, i) => new FakeNode(`fake-${i}`, now));
}
