import type { Redis as UpstashRedis } from '@upstash/redis';
import { redact, StoreAuthError, StoreError, StoreUnavailableError } from '../errors.js';
import type { Script } from '../scripts.js';
import { evalWithFallback, isNoScript, settle, withTimeout } from './shared.js';
import {
  type CallResult,
  DEFAULT_TIMEOUT_MS,
  type ScriptArg,
  type ScriptCall,
  type Store,
  type TransportOptions,
} from './types.js';

export interface UpstashStoreOptions extends TransportOptions {
  /** The database's REST URL (`UPSTASH_REDIS_REST_URL`). */
  url: string;
  /** The REST token (`UPSTASH_REDIS_REST_TOKEN`). Never logged, never part of an error. */
  token: string;
  /**
   * Ask the server to base64-encode string replies (Upstash's default, safe for binary values).
   * @default false (our replies are integers and UTF-8 JSON, and decoding costs time)
   */
  base64?: boolean;
}

/** Network error codes that prove the request never reached the server: safe to report as not applied. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * A Store over Upstash's REST API with `@upstash/redis` (automaticDeserialization off, auto-pipelining off,
 * no client retries: a timed-out write is reported as ambiguous, never silently sent twice). Every request
 * carries its own AbortSignal timeout.
 */
export function upstashStore(options: UpstashStoreOptions): Store {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { token } = options;
  let host: string;
  try {
    host = new URL(options.url).host;
  } catch {
    host = 'invalid-url';
  }
  const name = `upstash(${host})`;
  let client: Promise<UpstashRedis> | undefined;
  const redis = () => {
    client ??= import('@upstash/redis').then(
      ({ Redis }) =>
        new Redis({
          url: options.url,
          token,
          automaticDeserialization: false,
          enableAutoPipelining: false,
          enableTelemetry: false,
          responseEncoding: options.base64 ? 'base64' : false,
          retry: false,
          signal: () => AbortSignal.timeout(timeoutMs),
        }),
    );
    return client;
  };

  const mapError = (err: unknown): Error => {
    if (err instanceof StoreError) return err;
    const e = err instanceof Error ? err : new Error(String(err));
    const cause = (e as { cause?: { code?: string } }).cause;
    const text = redact(e.message.replace(/, command was: [\s\S]*$/, ''), [token]);
    if (e.name === 'TimeoutError' || e.name === 'AbortError') {
      return new StoreUnavailableError(`${name}: no reply within ${timeoutMs} ms`, {
        store: name,
        ambiguous: true,
      });
    }
    if (/unauthori[sz]ed|WRONGPASS|NOAUTH|invalid.*token/i.test(text)) {
      return new StoreAuthError(`${name}: authentication failed (check UPSTASH_REDIS_REST_TOKEN)`, {
        store: name,
        ambiguous: false,
      });
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

  const evalsha = async (sha: string, keys: readonly string[], args: readonly ScriptArg[]) =>
    (await redis()).evalsha(sha, [...keys], [...args]);
  const evalLua = async (lua: string, keys: readonly string[], args: readonly ScriptArg[]) =>
    (await redis()).eval(lua, [...keys], [...args]);

  const pipeline = async (calls: readonly ScriptCall[], useLua: boolean): Promise<CallResult[]> => {
    const p = (await redis()).pipeline();
    for (const c of calls) {
      if (useLua) p.eval(c.script.lua, [...c.keys], [...c.args]);
      else p.evalsha(c.script.sha1, [...c.keys], [...c.args]);
    }
    const replies = (await p.exec({ keepErrors: true })) as { result?: unknown; error?: string }[];
    return replies.map((r) =>
      settle(r.result ?? null, r.error ? new Error(r.error) : undefined, (e) => mapError(e)),
    );
  };

  return {
    kind: 'upstash',
    name,
    async run(script: Script, keys: readonly string[], args: readonly ScriptArg[]) {
      try {
        return await withTimeout(evalWithFallback(script, keys, args, evalsha, evalLua), timeoutMs * 2, name);
      } catch (err) {
        throw mapError(err);
      }
    },
    async runMany(calls: readonly ScriptCall[]) {
      if (calls.length === 0) return [];
      try {
        const results = await pipeline(calls, false);
        const missing = results.flatMap((r, i) => (!r.ok && isNoScript(r.error) ? [i] : []));
        if (missing.length > 0) {
          const retried = await pipeline(
            missing.map((i) => calls[i]!),
            true,
          );
          missing.forEach((i, j) => {
            results[i] = retried[j]!;
          });
        }
        return results;
      } catch (err) {
        throw mapError(err);
      }
    },
    async close() {},
  };
}
