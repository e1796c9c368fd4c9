/**
 * A Lambda-side client in its own process (and, through Network.spawn, its own network namespace), so a test
 * can partition it from a server while the test process still reaches that server. Prints one JSON line per
 * event on stdout, each with `at` (Date.now()):
 *
 *   hold    acquired {fence, validUntil}, valid {validUntil} whenever the lease's deadline moves, lost {reason}
 *   leader  elected {term}, act {term, accepted} (a fenced write at --resource), deposed {term, reason}
 *   once    started {fence}, write {fence, accepted} every 50 ms, aborted, done {result} / failed {error}
 *
 * `validUntil` is a wall-clock time (Date.now() + lease.remainingMs): the holder promises to act no later.
 *
 *   node --import tsx test/support/netns-client.ts --mode hold --nodes 10.213.7.2:6379 --key k --ttl-ms 1000
 *
 * --nodes: one server (a Lock), several (a Redlock), or --cluster with the seeds; or --rest <gateway url>
 * with the token in $ONCELY_GATEWAY_TOKEN.
 */
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import {
  createLock,
  createRedlock,
  elect,
  type Lease,
  type Store,
  upstashStore,
  withOnce,
} from '../../layers/oncely/src/index.js';
import { clusterStore, redisStore } from '../../layers/oncely/src/ioredis.js';
import { FENCED_WRITE, hostPort } from './fenced-resource.js';
import { lambdaContext } from './once.js';

const { values } = parseArgs({
  options: {
    mode: { type: 'string' },
    nodes: { type: 'string' },
    cluster: { type: 'boolean', default: false },
    rest: { type: 'string' },
    key: { type: 'string', default: 'partition' },
    id: { type: 'string', default: `client-${process.pid}` },
    'ttl-ms': { type: 'string', default: '1000' },
    'work-ms': { type: 'string', default: '5000' },
    resource: { type: 'string' },
  },
});
const id = values.id!;
const ttlMs = Number(values['ttl-ms']);
const out = (event: string, extra: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ event, id, at: Date.now(), ...extra })}\n`);
const nodes = (values.nodes ?? '').split(',').filter(Boolean).map(hostPort);
const timeoutMs = Math.max(250, Math.floor(ttlMs / 4));
const stores: Store[] = values.rest
  ? [upstashStore({ url: values.rest, token: process.env.ONCELY_GATEWAY_TOKEN ?? '', timeoutMs })]
  : values.cluster
    ? [clusterStore({ nodes, timeoutMs })]
    : nodes.map((n) => redisStore({ ...n, timeoutMs }));
const lock =
  stores.length === 1 ? createLock(stores[0]!) : createRedlock(stores, { nodeTimeoutMs: timeoutMs });
const resource = values.resource
  ? new Redis({ ...hostPort(values.resource), protocol: 2, maxRetriesPerRequest: 1, commandTimeout: 1000 })
  : undefined;
const write = async (fence: number): Promise<boolean> =>
  Number(await resource?.eval(FENCED_WRITE, 2, `${values.key}:fence`, `${values.key}:log`, fence, id)) === 1;

/** Reports the lease's wall-clock deadline each time it moves, until the lease is lost. */
function watch(lease: Lease): Promise<void> {
  let last = 0;
  return new Promise((resolve) => {
    const report = () => {
      const validUntil = Date.now() + Math.max(0, lease.remainingMs);
      if (lease.remainingMs > 0 && Math.abs(validUntil - last) > 2) {
        last = validUntil;
        out('valid', { validUntil });
      }
    };
    const timer = setInterval(report, 10);
    lease.signal.addEventListener('abort', () => {
      clearInterval(timer);
      resolve();
    });
  });
}

if (values.mode === 'hold') {
  await lock.using(
    values.key!,
    async (lease) => {
      out('acquired', { fence: lease.fence, validUntil: Date.now() + lease.remainingMs });
      await watch(lease);
      out('lost', { reason: String((lease.signal.reason as Error)?.message ?? lease.signal.reason) });
    },
    { ttlMs, retry: { attempts: 100, delayMs: 50, jitterMs: 20 }, onError: () => {} },
  );
} else if (values.mode === 'leader') {
  const election = elect({
    lock,
    name: values.key!,
    id,
    ttlMs,
    onElected: (leadership) => {
      out('elected', { term: leadership.term });
      leadership.signal.addEventListener('abort', () =>
        out('deposed', { term: leadership.term, reason: String(leadership.signal.reason) }),
      );
    },
  });
  setInterval(async () => {
    const leadership = election.leadership;
    if (!leadership) return;
    const accepted = await write(leadership.term).catch(() => undefined);
    if (accepted !== undefined) out('act', { term: leadership.term, accepted });
  }, 20);
} else if (values.mode === 'once') {
  const workMs = Number(values['work-ms']);
  const handler = withOnce(
    async (_event: { id: string }, _context, once) => {
      out('started', { fence: once.fence });
      const started = performance.now();
      while (performance.now() - started < workMs) {
        if (once.signal.aborted) {
          out('aborted');
          throw once.signal.reason;
        }
        const accepted = await write(once.fence).catch(() => undefined);
        if (accepted !== undefined) out('write', { fence: once.fence, accepted });
        await new Promise((r) => setTimeout(r, 50));
      }
      return { by: id };
    },
    { store: stores[0]!, key: (e) => e.id, ttlMs, namespace: 'partition', logger: () => {} },
  );
  try {
    out('done', { result: await handler({ id: values.key! }, lambdaContext(60_000)) });
  } catch (error) {
    out('failed', { error: (error as Error).name });
  }
} else {
  throw new Error(`netns-client: unknown --mode ${values.mode}`);
}
out('exit');
