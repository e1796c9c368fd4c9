import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import { ConfigError, fromEnv } from '../../layers/oncely/src/index.js';
import { envFlag } from '../../layers/oncely/src/transport/from-env.js';

/** A secret nobody could guess, and no message could contain by chance. */
const marker = () => `zq${randomBytes(6).toString('hex')}`;

type Case = { what: string; env: (m: string) => Record<string, string>; names: string };

// Each value is malformed and carries the marker where a secret would sit: userinfo, a password with '@',
// a query, a path, a fragment, a whole value pasted into the wrong variable.
const CASES: Case[] = [
  {
    what: 'redis:// with a password and no host',
    env: (m) => ({ ONCELY_REDIS_URL: `redis://app:${m}@` }),
    names: 'ONCELY_REDIS_URL',
  },
  {
    what: 'a password containing @ and a bad port',
    env: (m) => ({ ONCELY_REDIS_URL: `redis://app:p@${m}@host:99999` }),
    names: 'ONCELY_REDIS_URL',
  },
  {
    what: 'a password containing @ and no host',
    env: (m) => ({ ONCELY_REDIS_URL: `redis://app:p@ss@${m}@` }),
    names: 'ONCELY_REDIS_URL',
  },
  {
    what: 'http:// for a Redis URL, with credentials',
    env: (m) => ({ ONCELY_REDIS_URL: `http://app:${m}@cache.local:6379` }),
    names: 'ONCELY_REDIS_URL',
  },
  {
    what: 'a secret in the path',
    env: (m) => ({ ONCELY_REDIS_URL: `redis://cache.local:6379/${m}` }),
    names: 'ONCELY_REDIS_URL',
  },
  {
    what: 'a query with a password and a bad port',
    env: (m) => ({ ONCELY_REDIS_URL: `redis://cache.local:70000/0?password=${m}` }),
    names: 'ONCELY_REDIS_URL',
  },
  { what: 'a bare password as the URL', env: (m) => ({ ONCELY_REDIS_URL: m }), names: 'ONCELY_REDIS_URL' },
  {
    what: 'a password as the scheme',
    env: (m) => ({ ONCELY_REDIS_URL: `${m}:x@cache.local` }),
    names: 'ONCELY_REDIS_URL',
  },
  {
    what: 'rediss:// with TLS turned off',
    env: (m) => ({ ONCELY_REDIS_URL: `rediss://app:${m}@cache.local:6380`, ONCELY_REDIS_TLS: 'false' }),
    names: 'ONCELY_REDIS_TLS',
  },
  {
    what: 'a secret as the TLS flag',
    env: (m) => ({ ONCELY_REDIS_URL: 'redis://cache.local', ONCELY_REDIS_TLS: m }),
    names: 'ONCELY_REDIS_TLS',
  },
  {
    what: 'a cluster entry with user:pass@',
    env: (m) => ({ ONCELY_REDIS_CLUSTER_NODES: `a.local:7000,app:${m}@b.local:7001` }),
    names: 'ONCELY_REDIS_CLUSTER_NODES entry 2 of 2',
  },
  {
    what: 'a cluster entry that is a URL',
    env: (m) => ({ ONCELY_REDIS_CLUSTER_NODES: `redis://app:${m}@b.local:7001` }),
    names: 'ONCELY_REDIS_CLUSTER_NODES entry 1 of 1',
  },
  {
    what: 'a bare secret as a cluster entry',
    env: (m) => ({ ONCELY_REDIS_CLUSTER_NODES: `a.local:7000,${m}` }),
    names: 'ONCELY_REDIS_CLUSTER_NODES entry 2 of 2',
  },
  {
    what: 'a cluster entry with a path',
    env: (m) => ({ ONCELY_REDIS_CLUSTER_NODES: `a.local:7000/${m}` }),
    names: 'ONCELY_REDIS_CLUSTER_NODES entry 1 of 1',
  },
  {
    what: 'a cluster entry with a secret port',
    env: (m) => ({ ONCELY_REDIS_CLUSTER_NODES: `a.local:${m}` }),
    names: 'ONCELY_REDIS_CLUSTER_NODES entry 1 of 1',
  },
  {
    what: 'a REST URL with ?_token=',
    env: (m) => ({
      UPSTASH_REDIS_REST_URL: `https://eu1.upstash.io/?_token=${m}`,
      UPSTASH_REDIS_REST_TOKEN: 'tok-abcdef',
    }),
    names: 'UPSTASH_REDIS_REST_URL',
  },
  {
    what: 'a REST URL with credentials',
    env: (m) => ({
      UPSTASH_REDIS_REST_URL: `https://default:${m}@eu1.upstash.io`,
      UPSTASH_REDIS_REST_TOKEN: 'tok-abcdef',
    }),
    names: 'UPSTASH_REDIS_REST_URL',
  },
  {
    what: 'a REST URL with the wrong scheme and a path',
    env: (m) => ({
      UPSTASH_REDIS_REST_URL: `ftp://eu1.upstash.io/${m}`,
      UPSTASH_REDIS_REST_TOKEN: 'tok-abcdef',
    }),
    names: 'UPSTASH_REDIS_REST_URL',
  },
  {
    what: 'a REST token with whitespace',
    env: (m) => ({ UPSTASH_REDIS_REST_URL: 'https://eu1.upstash.io', UPSTASH_REDIS_REST_TOKEN: `${m} ${m}` }),
    names: 'UPSTASH_REDIS_REST_TOKEN',
  },
  {
    what: 'a REST token without its URL, and a Redis URL',
    env: (m) => ({ UPSTASH_REDIS_REST_TOKEN: m, ONCELY_REDIS_URL: `redis://:${m}@cache.local` }),
    names: 'set only one store',
  },
  {
    what: 'a secret as the timeout',
    env: (m) => ({ ONCELY_REDIS_URL: 'redis://cache.local', ONCELY_TIMEOUT_MS: m }),
    names: 'ONCELY_TIMEOUT_MS',
  },
  {
    what: 'a password variable next to a bad URL',
    env: (m) => ({ ONCELY_REDIS_URL: 'redis://', ONCELY_REDIS_PASSWORD: m }),
    names: 'ONCELY_REDIS_URL',
  },
];

/** Every text an error can end up as: message, stack, cause chain, JSON, inspect (as a log line prints it). */
function renderings(err: unknown): string[] {
  const out: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && depth < 10; depth += 1) {
    if (e instanceof Error) out.push(e.message, String(e.stack), JSON.stringify(e));
    out.push(inspect(e, { depth: Infinity, showHidden: true }), String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return out;
}

function captureOutput<T>(fn: () => T): { result: T; written: string } {
  let written = '';
  const grab = (chunk: unknown) => {
    written += String(chunk);
    return true;
  };
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(grab);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(grab);
  try {
    return { result: fn(), written };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('no secret in a ConfigError', () => {
  it('the table has at least 15 malformed values', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(15);
  });

  it.each(CASES)('$what', ({ env, names }) => {
    const m = marker();
    const { result, written } = captureOutput(() => {
      try {
        fromEnv(env(m));
        return undefined;
      } catch (e) {
        return e;
      }
    });
    expect(result).toBeInstanceOf(ConfigError);
    const err = result as ConfigError;
    expect(err.message).toContain(names);
    for (const text of [...renderings(err), ...err.problems, written]) {
      expect(text.toLowerCase()).not.toContain(m);
    }
  });

  it('a flag that is not one (ONCELY_DISABLED) names the variable, not the value', () => {
    const m = marker();
    let caught: unknown;
    try {
      envFlag('ONCELY_DISABLED', { ONCELY_DISABLED: m });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toMatch(/ONCELY_DISABLED must be true or false/);
    for (const text of renderings(caught)) expect(text.toLowerCase()).not.toContain(m);
  });

  it('a cold start that dies of a bad configuration logs no secret (uncaught, as Lambda prints it)', () => {
    const markers = CASES.map(() => marker());
    const envs = CASES.map((c, i) => c.env(markers[i]!));
    // Each case is logged the way a handler would (console.error), and the last one crashes the process.
    const script = `
      import { fromEnv } from './layers/oncely/src/index.ts';
      const envs = JSON.parse(process.env.CASES);
      for (const env of envs.slice(0, -1)) {
        try { fromEnv(env); } catch (e) { console.error(e); console.log(JSON.stringify({ error: e, message: e.message })); }
      }
      fromEnv(envs.at(-1));
    `;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('../..', import.meta.url),
      env: { ...process.env, CASES: JSON.stringify(envs) },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(child.status).not.toBe(0);
    const output = `${child.stdout}\n${child.stderr}`;
    expect(output).toContain('ConfigError');
    expect(output.match(/ConfigError/g)?.length).toBeGreaterThanOrEqual(CASES.length);
    for (const m of markers) expect(output.toLowerCase()).not.toContain(m);
  });
});
