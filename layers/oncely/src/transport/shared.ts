import { StoreError } from '../errors.js';
import type { Script } from '../scripts.js';
import type { CallResult, ScriptArg, ScriptCall } from './types.js';

/** True for the reply a server gives to EVALSHA of a script it has not cached. */
export function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.includes('NOSCRIPT');
}

/** The one EVALSHA-then-EVAL-on-NOSCRIPT routine every transport uses. */
export async function evalWithFallback(
  script: Script,
  keys: readonly string[],
  args: readonly ScriptArg[],
  evalsha: (sha: string, keys: readonly string[], args: readonly ScriptArg[]) => Promise<unknown>,
  evalLua: (lua: string, keys: readonly string[], args: readonly ScriptArg[]) => Promise<unknown>,
): Promise<unknown> {
  try {
    return await evalsha(script.sha1, keys, args);
  } catch (err) {
    if (!isNoScript(err)) throw err;
    return evalLua(script.lua, keys, args);
  }
}

/** Keeps an already-typed StoreError, else wraps with the given mapper. */
export function settle(value: unknown, error: unknown, mapError: (e: unknown) => Error): CallResult {
  if (error) return { ok: false, error: error instanceof StoreError ? error : mapError(error) };
  return { ok: true, value };
}

/**
 * The batch form of evalWithFallback: runs every call as EVALSHA in one round trip, then the calls that got
 * NOSCRIPT once more as EVAL (a second round trip, only after a SCRIPT FLUSH or a new server).
 */
export async function runManyWithFallback(
  calls: readonly ScriptCall[],
  pipeline: (calls: readonly ScriptCall[], useLua: boolean) => Promise<CallResult[]>,
): Promise<CallResult[]> {
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
}
