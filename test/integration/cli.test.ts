// The `oncely` CLI against real servers on every transport, configured by the environment as fromEnv() is:
// each command's table and JSON output, its exit code (0 ok, 1 not found, 2 bad input, 3 store unavailable),
// confirmation before deleting, and records listed by SCAN on every master of a cluster (the records sit on
// different masters, by their hash tags).
import type { Context } from 'aws-lambda';
import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, EXIT, HELP, main } from '../../layers/oncely/src/cli.js';
import { createLock, elect, withOnce } from '../../layers/oncely/src/index.js';
import { Records } from '../../layers/oncely/src/once/record.js';
import { keySlot } from '../../layers/oncely/src/transport/cluster.js';
import { deferred, unique } from '../support/once.js';
import { startTransport, TRANSPORTS, type TransportFixture } from '../support/transports.js';

const context = (): Context =>
  ({
    functionName: 'cli-fn',
    awsRequestId: unique('req'),
    getRemainingTimeInMillis: () => 60_000,
  }) as Context;

/** Runs the CLI in-process with `env`; returns its exit code and what it printed. */
async function cli(
  env: Record<string, string | undefined>,
  argv: string[],
  options: { interactive?: boolean; answer?: string } = {},
) {
  let out = '';
  let err = '';
  const asked: string[] = [];
  const io: CliIo = {
    env,
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
    interactive: options.interactive ?? false,
    ask: async (q) => {
      asked.push(q);
      return options.answer ?? '';
    },
  };
  const code = await main(argv, io);
  return { code, out, err, asked, json: () => JSON.parse(out) as Record<string, unknown> };
}

/** The environment fromEnv() reads for a transport. */
function envFor(fx: TransportFixture): Record<string, string> {
  if (fx.name === 'rest')
    return { UPSTASH_REDIS_REST_URL: fx.gateway!.url, UPSTASH_REDIS_REST_TOKEN: fx.gateway!.token };
  const nodes = fx.servers.map((s) => `${s.host}:${s.port}`);
  if (fx.name === 'cluster') return { ONCELY_REDIS_CLUSTER_NODES: nodes.join(',') };
  return { ONCELY_REDIS_URL: `redis://${nodes[0]}` };
}

describe.each(TRANSPORTS)('oncely CLI over %s', (transport) => {
  let fx: TransportFixture;
  let env: Record<string, string>;
  const namespace = `cli-${transport}`;

  beforeAll(async () => {
    fx = await startTransport(transport);
    env = envFor(fx);
  });
  afterAll(async () => {
    await fx?.stop();
  });

  it('status: held (remaining, fence, never the token) and free', async () => {
    const lock = createLock(fx.store());
    const name = unique('lock');
    const lease = (await lock.tryAcquire(name, { ttlMs: 30_000 }))!;
    const held = await cli(env, ['status', name]);
    expect(held.code).toBe(EXIT.ok);
    expect(held.out).toMatch(/state\s+held/);
    expect(held.out).toMatch(new RegExp(`fence\\s+${lease.fence}\\b`));
    expect(held.out).not.toContain(lease.token);
    const json = (await cli(env, ['status', name, '--json'])).json();
    expect(json).toMatchObject({ lock: name, held: true, fence: lease.fence });
    expect(json.remainingMs).toBeGreaterThan(20_000);
    expect(JSON.stringify(json)).not.toContain(lease.token);
    await lease.release();
    const free = await cli(env, ['status', name, '--json']);
    expect(free.code).toBe(EXIT.ok);
    expect(free.json()).toMatchObject({ held: false, remainingMs: 0 });
  });

  it('release --force: shows the lock, asks on a terminal, needs --yes otherwise; the fence keeps rising', async () => {
    const lock = createLock(fx.store());
    const name = unique('stuck');
    const lease = (await lock.tryAcquire(name, { ttlMs: 60_000 }))!;
    expect((await cli(env, ['release', name])).code).toBe(EXIT.badInput); // no --force
    const refused = await cli(env, ['release', name, '--force']); // not a terminal, no --yes
    expect(refused.code).toBe(EXIT.badInput);
    expect(refused.out).toMatch(new RegExp(`removing lock\\s+${name}`));
    expect(refused.err).toMatch(/--yes/);
    const declined = await cli(env, ['release', name, '--force'], { interactive: true, answer: 'n' });
    expect(declined.asked[0]).toContain(`fence ${lease.fence}`);
    expect(declined.code).toBe(EXIT.badInput);
    expect((await lock.status(name)).held).toBe(true);
    const done = await cli(env, ['release', name, '--force'], { interactive: true, answer: 'y' });
    expect(done.code).toBe(EXIT.ok);
    expect(done.out).toMatch(/result\s+released/);
    expect((await lock.status(name)).held).toBe(false);
    expect(await lease.release()).not.toBe('released'); // the old holder finds it gone
    const next = (await lock.tryAcquire(name, { ttlMs: 5_000 }))!;
    expect(next.fence).toBeGreaterThan(lease.fence);
    const yes = await cli(env, ['release', name, '--force', '--yes', '--json']);
    expect(yes.code).toBe(EXIT.ok);
    expect(yes.json()).toMatchObject({ lock: name, fence: next.fence, result: 'released' });
    expect((await cli(env, ['release', name, '--force', '--yes'])).code).toBe(EXIT.notFound);
  });

  it('record and forget: a stuck in-progress record found by its raw key, forgotten, and the event runs again', async () => {
    const store = fx.store();
    const gate = deferred();
    const started = deferred();
    let runs = 0;
    const h = withOnce(
      async (e: { id: string; n: number }) => {
        runs++;
        if (e.n === 1) {
          started.resolve();
          await gate.promise;
        }
        return { ok: true, note: 'result-secret' };
      },
      { store, namespace, key: { jmespath: 'id' }, payload: { jmespath: 'n' }, logLevel: 'silent' },
    );
    const key = `order:${unique('rec')}`;
    const first = h({ id: key, n: 1 }, context()).catch((e: unknown) => e);
    await started.promise;

    const shown = await cli(env, ['record', namespace, key]);
    expect(shown.code).toBe(EXIT.ok);
    const [rec] = new Records('oncely', namespace).keysOf(key);
    expect(shown.out).toMatch(new RegExp(`record\\s+${rec.replace(/[{}]/g, '\\$&')}`));
    expect(shown.out).toMatch(/status\s+in-progress/);
    expect(shown.out).toMatch(/lease left\s+\d+ ms/);
    const info = (await cli(env, ['record', namespace, key, '--json'])).json();
    expect(info).toMatchObject({ status: 'in-progress', resultBytes: null, redisKey: rec });
    expect(info.payloadHash).toMatch(/^[\w-]{22}$/);
    expect(info.ageMs).toBeGreaterThanOrEqual(0);
    expect(info.ageMs).toBeLessThan(60_000);
    expect(JSON.stringify(info)).not.toMatch(/secret/);

    // forget: refused without --yes off a terminal; then done, and a delivery of the event runs again
    expect((await cli(env, ['forget', namespace, key])).code).toBe(EXIT.badInput);
    const forgot = await cli(env, ['forget', namespace, key, '--yes']);
    expect(forgot.code).toBe(EXIT.ok);
    expect(forgot.out).toMatch(/result\s+forgotten/);
    expect((await cli(env, ['record', namespace, key])).code).toBe(EXIT.notFound);
    expect(await h({ id: key, n: 2 }, context())).toEqual({ ok: true, note: 'result-secret' });
    expect(runs).toBe(2);
    gate.resolve();
    await first; // its completion finds the record no longer its own

    const done = (await cli(env, ['record', namespace, key, '--json'])).json();
    expect(done).toMatchObject({
      status: 'completed',
      resultBytes: JSON.stringify({ ok: true, note: 'result-secret' }).length,
    });
    expect(done.remainingMs).toBeGreaterThan(86_000_000); // the default retention, 24 h
    expect((await cli(env, ['record', namespace, 'never-seen'])).code).toBe(EXIT.notFound);
    expect((await cli(env, ['forget', namespace, 'never-seen', '--yes'])).code).toBe(EXIT.notFound);
  });

  it('records: SCAN on every master, counted, filtered by status, limited', async () => {
    const ns = `${namespace}-list*`; // a glob character: must not match other namespaces
    const store = fx.store();
    const gate = deferred();
    const h = withOnce(
      async (e: { id: string; wait?: boolean }) => {
        if (e.wait) await gate.promise;
        return e.id;
      },
      { store, namespace: ns, key: { jmespath: 'id' }, logLevel: 'silent' },
    );
    const other = withOnce(async () => 1, {
      store,
      namespace: `${namespace}-listX`,
      key: { jmespath: 'id' },
      logLevel: 'silent',
    });
    const keys = Array.from({ length: 12 }, (_, i) => `k${i}-${unique('l')}`);
    for (const k of keys.slice(0, 9)) await h({ id: k }, context());
    const running = keys.slice(9).map((k) => h({ id: k, wait: true }, context()));
    await other({ id: 'x' }, context());
    const inProgress = async () =>
      (await cli(env, ['records', ns, '--status', 'in-progress', '--json'])).json();
    await expect.poll(async () => (await inProgress()).count).toBe(3);

    if (transport === 'cluster') {
      // the records are spread over the masters: the listing had to ask each of them
      const c = fx.admin as Cluster;
      const slots = (await c.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
      const owner = (slot: number) => slots.find(([a, b]) => slot >= a && slot <= b)?.[2][1];
      const records = new Records('oncely', ns);
      const owners = new Set(keys.map((k) => owner(keySlot(records.keysOf(k)[0]))));
      expect(owners.size).toBeGreaterThanOrEqual(2);
    }

    const all = await cli(env, ['records', ns, '--json']);
    expect(all.code).toBe(EXIT.ok);
    const list = all.json() as { count: number; records: { keyDigest: string; status: string }[] };
    expect(list.count).toBe(12);
    const digests = keys.map((k) => new Records('oncely', ns).keysOf(k)[0].match(/:([^:}]+)\}:rec$/)![1]);
    expect(list.records.map((r) => r.keyDigest).sort()).toEqual([...digests].sort());
    const completed = (await cli(env, ['records', ns, '--status', 'completed', '--json'])).json();
    expect(completed.count).toBe(9);
    const limited = await cli(env, ['records', ns, '--limit', '4']);
    expect(limited.out.trim().split('\n')).toHaveLength(1 + 4 + 1); // header, 4 rows, the count
    expect(limited.out).toMatch(/^KEY DIGEST\s+STATUS\s+FENCE\s+AGE\s+REMAINING\s+RESULT$/m);
    expect(limited.out).toMatch(/12 records in .* \(first 4 shown: --limit\)/);
    gate.resolve();
    await Promise.all(running);
    expect((await cli(env, ['records', `${namespace}-none`, '--json'])).json()).toEqual({
      namespace: `${namespace}-none`,
      count: 0,
      records: [],
    });
  });

  it('leader: who leads, their term and time left; none once they resign', async () => {
    const name = unique('election');
    const elected = deferred();
    const election = elect({
      lock: createLock(fx.store()),
      name,
      id: 'worker-a',
      ttlMs: 20_000,
      resignOn: false,
      onElected: () => elected.resolve(),
    });
    await elected.promise;
    const shown = await cli(env, ['leader', name]);
    expect(shown.code).toBe(EXIT.ok);
    expect(shown.out).toMatch(/leader\s+worker-a/);
    const json = (await cli(env, ['leader', name, '--json'])).json();
    expect(json).toMatchObject({ election: name, leader: 'worker-a', term: election.term });
    expect(json.remainingMs).toBeGreaterThan(0);
    await election.resign();
    expect((await cli(env, ['leader', name])).code).toBe(EXIT.notFound);
  });
});

describe('oncely CLI: input and store errors', () => {
  it('--help, and bad input (exit 2): unknown command, argument count, flags, no store configured', async () => {
    const help = await cli({}, ['--help']);
    expect(help.code).toBe(EXIT.ok);
    expect(help.out).toBe(HELP);
    for (const argv of [
      [],
      ['nope'],
      ['status'],
      ['record', 'ns'],
      ['records', 'ns', '--status', 'done'],
      ['records', 'ns', '--limit', '0'],
      ['status', 'x', '--bogus'],
    ]) {
      const r = await cli({ ONCELY_REDIS_URL: 'redis://127.0.0.1:1' }, argv);
      expect(r.code, argv.join(' ')).toBe(EXIT.badInput);
    }
    const none = await cli({}, ['status', 'x']);
    expect(none.code).toBe(EXIT.badInput);
    expect(none.err).toMatch(/no store configured/);
  });

  it('store unreachable: exit 3, naming the store but no secret', async () => {
    const tcp = await cli(
      { ONCELY_REDIS_URL: 'redis://:hunter2-secret@127.0.0.1:1', ONCELY_TIMEOUT_MS: '500' },
      ['status', 'x'],
    );
    expect(tcp.code).toBe(EXIT.storeUnavailable);
    expect(tcp.err).toMatch(/store unavailable/);
    expect(tcp.err).not.toContain('hunter2');
    const rest = await cli(
      {
        UPSTASH_REDIS_REST_URL: 'http://127.0.0.1:1',
        UPSTASH_REDIS_REST_TOKEN: 'tok-secret',
        ONCELY_TIMEOUT_MS: '500',
      },
      ['records', 'ns'],
    );
    expect(rest.code).toBe(EXIT.storeUnavailable);
    expect(rest.err).not.toContain('tok-secret');
  });
});
