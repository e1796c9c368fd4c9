// What a user reads when something is set up wrong (issue 24, item 7), against real servers: a rediss:// URL
// against a plain-text server, a refused password or token (the store's own reply and what to check, never the
// secret), the CLI's exit codes telling a refused credential (4) from an unavailable store (3), its own words for
// bad flags, and the dev gateway's command line taking its token from the environment only.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Gateway, startGateway } from '../../dev/gateway.js';
import { type RedisProcess, startRedis } from '../../dev/redis-server.js';
import { type CliIo, EXIT, main } from '../../layers/oncely/src/cli.js';
import {
  createLock,
  type fromEnv,
  StoreAuthError,
  StoreUnavailableError,
} from '../../layers/oncely/src/index.js';
import { redisStore } from '../../layers/oncely/src/ioredis.js';
import { ioredisLoadProblem } from '../../layers/oncely/src/transport/tcp.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const SECRET = 'right-secret-7f3a';
const WRONG = 'wrong-secret-91bc';

let plain: RedisProcess;
let locked: RedisProcess;
let gateway: Gateway;

beforeAll(async () => {
  [plain, locked] = await Promise.all([startRedis(), startRedis({ password: SECRET })]);
  gateway = await startGateway({ redis: { host: plain.host, port: plain.port }, token: SECRET });
});
afterAll(async () => {
  await gateway?.close();
  await Promise.all([plain?.stop(), locked?.stop()]);
});

/** The error a first lock call fails with (the call must fail). */
async function failure(store: ReturnType<typeof fromEnv>): Promise<Error> {
  try {
    await createLock(store).tryAcquire('error-text', { ttlMs: 5_000 });
  } finally {
    await store.close();
  }
  throw new Error('the call succeeded');
}

async function cli(env: Record<string, string>, argv: string[]) {
  let out = '';
  let err = '';
  const io: CliIo = {
    env,
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    interactive: false,
    ask: async () => '',
  };
  return { code: await main(argv, io), out, err };
}

describe('TCP', () => {
  it('rediss:// against a plain-text server: says the server may not speak TLS, not only "no reply"', async () => {
    // The handshake gets no reply at all: the timeout is what ends it (1 s: it waits on nothing else).
    const err = await failure(
      redisStore({ url: `rediss://${plain.host}:${plain.port}`, timeoutMs: 1_000 }),
    ).catch((e: Error) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.message).toMatch(/uses TLS \(rediss:\/\/ or tls: true\).*plain text, use redis:\/\//);
    // The same server over redis:// works: the hint is about TLS, not the server.
    const ok = redisStore({ url: plain.url });
    expect(await createLock(ok).tryAcquire('error-text-ok', { ttlMs: 5_000 })).not.toBeNull();
    await ok.close();
  });

  it('a wrong password: StoreAuthError with the server reply and what to check, never the password', async () => {
    const err = await failure(redisStore({ url: `redis://:${WRONG}@${locked.host}:${locked.port}` })).catch(
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(StoreAuthError);
    expect(err.message).toMatch(/authentication failed \(WRONGPASS[^)]*\): check the password and user/);
    expect(err.message).toMatch(/ONCELY_REDIS_PASSWORD/);
    expect(`${err.message}${err.stack}`).not.toContain(WRONG);
  });

  it('no password where one is required: NOAUTH, and the same advice', async () => {
    const err = await failure(redisStore({ url: locked.url.replace(/\/\/[^@]*@/, '//') })).catch(
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(StoreAuthError);
    expect(err.message).toMatch(/authentication failed \(NOAUTH[^)]*\): check the password/);
  });
});

describe('the oncely command: exit codes and words', () => {
  it('a refused credential is exit 4 (TCP password, REST token); an unreachable store is exit 3', async () => {
    const tcp = await cli({ ONCELY_REDIS_URL: `redis://:${WRONG}@${locked.host}:${locked.port}` }, [
      'status',
      'x',
    ]);
    expect(tcp.code).toBe(EXIT.authFailed);
    expect(tcp.code).toBe(4);
    expect(tcp.err).toMatch(/refused the credentials.*check the password/);
    expect(tcp.err).not.toContain(WRONG);
    const rest = await cli({ UPSTASH_REDIS_REST_URL: gateway.url, UPSTASH_REDIS_REST_TOKEN: WRONG }, [
      'status',
      'x',
    ]);
    expect(rest.code).toBe(EXIT.authFailed);
    expect(rest.err).toMatch(/check UPSTASH_REDIS_REST_TOKEN/);
    expect(rest.err).not.toContain(WRONG);
    const right = await cli({ UPSTASH_REDIS_REST_URL: gateway.url, UPSTASH_REDIS_REST_TOKEN: SECRET }, [
      'status',
      'x',
    ]);
    expect(right.code).toBe(EXIT.ok);
    const down = await cli({ ONCELY_REDIS_URL: 'redis://127.0.0.1:1', ONCELY_TIMEOUT_MS: '500' }, [
      'status',
      'x',
    ]);
    expect(down.code).toBe(EXIT.storeUnavailable);
  });

  it('--version; bad flags in our words (exit 2), not parseArgs text', async () => {
    const version = await cli({}, ['--version']);
    expect(version.code).toBe(EXIT.ok);
    expect(version.out).toMatch(/^\d+\.\d+\.\d+/);
    const typo = await cli({}, ['status', 'x', '--jsn']);
    expect(typo.code).toBe(EXIT.badInput);
    expect(typo.err).toMatch(/^oncely: unknown option --jsn \(did you mean --json\?\)/);
    const negative = await cli({}, ['records', 'ns', '--limit', '-3']);
    expect(negative.code).toBe(EXIT.badInput);
    expect(negative.err).toMatch(/^oncely: --limit must be a whole number from 1 to 100000, got "-3"/);
    for (const r of [typo, negative]) expect(r.err).not.toMatch(/To specify|ambiguous|'--'/);
    expect((await cli({}, ['records', 'ns', '--limit'])).err).toMatch(/^oncely: --limit needs a value/);
    expect((await cli({}, ['status', 'x', '--json=yes'])).err).toMatch(/^oncely: --json takes no value/);
  });
});

describe('loading ioredis fails: the message fits the error, which is kept as cause', () => {
  it.each([
    [
      'ioredis bundled into an ES module bundle',
      new Error('Dynamic require of "events" is not supported'),
      /createRequire banner.*mark ioredis external/,
    ],
    [
      'ioredis not installed',
      Object.assign(new Error("Cannot find package 'ioredis' imported from /app/index.mjs"), {
        code: 'ERR_MODULE_NOT_FOUND',
      }),
      /needs the ioredis package: npm install ioredis/,
    ],
    [
      'a dependency of ioredis missing',
      Object.assign(new Error("Cannot find module 'denque'"), { code: 'MODULE_NOT_FOUND' }),
      /could not load ioredis: Cannot find module 'denque'$/,
    ],
  ])('%s', (_name, cause, expected) => {
    const problem = ioredisLoadProblem(cause);
    expect(problem).toMatch(expected);
    if (!/not installed/.test(_name)) expect(problem).not.toMatch(/npm install/);
  });
});

describe('the dev gateway command line', () => {
  it('refuses a token or password given as an argument (ps shows it) without echoing it', async () => {
    const tsx = `${root}node_modules/tsx/dist/cli.mjs`;
    const err = await run(
      process.execPath,
      [tsx, 'dev/gateway.ts', '--redis', '127.0.0.1:1', '--token', WRONG],
      {
        cwd: root,
        timeout: 60_000,
      },
    ).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code?: number; stderr?: string }) => ({ code: e.code, stderr: e.stderr ?? '' }),
    );
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/pass the secret in UPSTASH_REDIS_REST_TOKEN, not as an argument/);
    expect(err.stderr).not.toContain(WRONG);
  });
});
