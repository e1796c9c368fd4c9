import type { Redis as UpstashRedis } from '@upstash/redis';
import { redact, StoreAuthError, StoreError, StoreUnavailableError, ValidationError } from '../errors.js';
import type { Script } from '../scripts.js';
import { evalWithFallback, runManyWithFallback, settle } from './shared.js';
import type { CallResult, ScriptArg, ScriptCall, Store } from './types.js';

/** Network error codes that prove the request never reached the server. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * A Store over an `@upstash/redis` client you already have (its own fetch, retries, timeout `signal` and
 * telemetry settings apply). Create it with `automaticDeserialization: false` — oncely's replies are raw
 * strings and integers — and preferably `retry: false` and `signal: () => AbortSignal.timeout(ms)`.
 *
 * `upstashStore({ url, token })` is the default REST transport: it speaks the same protocol over a keep-alive
 * `node:http` agent, batches concurrent calls, and is about half the latency and a third of the bundle
 * (docs/benchmarks.md). Use this one to share a client your code already configures.
 */
export function upstashClientStore(redis: UpstashRedis, options: { name?: string } = {}): Store {
  const opts = (redis as unknown as { opts?: { automaticDeserialization?: boolean } }).opts;
  if (typeof redis?.evalsha !== 'function' || typeof redis.pipeline !== 'function') {
    throw new ValidationError(['redis must be an @upstash/redis Redis instance'], 'upstashClientStore');
  }
  if (opts?.automaticDeserialization !== false) {
    throw new ValidationError(
      ['create the @upstash/redis client with automaticDeserialization: false (oncely reads raw replies)'],
      'upstashClientStore',
    );
  }
  const name = options.name ?? 'upstash(client)';

  const mapError = (err: unknown): Error => {
    if (err instanceof StoreError) return err;
    const e = err instanceof Error ? err : new Error(String(err));
    const cause = (e as { cause?: { code?: string } }).cause;
    const text = redact(e.message.replace(/, command was: [\s\S]*$/, ''), []);
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
    return new StoreError(`${name}: ${text}`, { store: name, ambiguous: false });
  };

  const evalsha = (sha: string, keys: readonly string[], args: readonly ScriptArg[]) =>
    redis.evalsha(sha, [...keys], [...args]);
  const evalLua = (lua: string, keys: readonly string[], args: readonly ScriptArg[]) =>
    redis.eval(lua, [...keys], [...args]);

  const pipeline = async (calls: readonly ScriptCall[], useLua: boolean): Promise<CallResult[]> => {
    const p = redis.pipeline();
    for (const c of calls) {
      if (useLua) p.eval(c.script.lua, [...c.keys], [...c.args]);
      else p.evalsha(c.script.sha1, [...c.keys], [...c.args]);
    }
    const replies = (await p.exec({ keepErrors: true })) as { result?: unknown; error?: string }[];
    return replies.map((r) => settle(r.result ?? null, r.error ? new Error(r.error) : undefined, mapError));
  };

  return {
    kind: 'upstash',
    name,
    async run(script: Script, keys: readonly string[], args: readonly ScriptArg[]) {
      try {
        return await evalWithFallback(script, keys, args, evalsha, evalLua);
      } catch (err) {
        throw mapError(err);
      }
    },
    async runMany(calls: readonly ScriptCall[]) {
      if (calls.length === 0) return [];
      try {
        return await runManyWithFallback(calls, pipeline);
      } catch (err) {
        throw mapError(err);
      }
    },
    async close() {},
  };
}
