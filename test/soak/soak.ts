/**
 * `npm run test:soak [-- --minutes 30 --sample-every-ms 60000 --fault-every-ms 4000]`: mixed load for a long
 * time with network faults every few seconds, to show whether memory, sockets, timers and Redis keys stay
 * flat and whether any safety check ever fails. Not in `npm test` (30 minutes by default); `--minutes 2`
 * proves it works. Needs root (network namespaces, test/support/netns.ts).
 *
 * Load (this process is the client, in the root namespace): lock holders on a few hot keys (`using()`),
 * `withOnce` calls on a pool of ids (so most are duplicates), `withOnceBatch` SQS batches from the same pool,
 * and two `elect()` candidates. Faults on the client's path to the store (the resource that takes fenced
 * writes is never cut): both directions cut, replies dropped, the store's link down, each for 0.5-2 s.
 *
 * Safety checks (a violation fails the run): two holders of one lock key inside their validity at once; one
 * idempotency key's handler running twice at once; two leaders at once; a fenced write accepted after a
 * greater fence (the resource's log). Growth: sampled every `--sample-every-ms` (after a forced GC); the run
 * fails if the last sample's heap, sockets, timers or keys exceed those of the first sample under load (one
 * interval in) by more than BOUNDS.
 *
 * Prints one JSON line per sample and a summary: calls made, faults injected, violations, first and last
 * sample. Exit code 0 only with no violation and no growth.
 */
import { parseArgs } from 'node:util';
import type { SQSEvent } from 'aws-lambda';
import { Redis } from 'ioredis';
import {
  createLock,
  type Election,
  elect,
  type Store,
  withOnce,
  withOnceBatch,
} from '../../layers/oncely/src/index.js';
import { redisStore } from '../../layers/oncely/src/ioredis.js';
import { FENCED_WRITE, parseLog } from '../support/fenced-resource.js';
import { Network } from '../support/netns.js';
import { lambdaContext } from '../support/once.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' },
    'sample-every-ms': { type: 'string', default: '60000' },
    'fault-every-ms': { type: 'string', default: '4000' },
  },
});
const durationMs = Number(values.minutes) * 60_000;
const sampleEveryMs = Number(values['sample-every-ms']);
const faultEveryMs = Number(values['fault-every-ms']);
if (!(durationMs > 0 && sampleEveryMs > 0 && faultEveryMs > 0))
  throw new RangeError('soak: --minutes, --sample-every-ms and --fault-every-ms must be positive numbers');

const TTL_MS = 2000;
const HOT_KEYS = 8;
const ID_POOL = 400;
/** Records outlive their retention by a grace period: kept short so the keys plateau within the run. */
const RETENTION_MS = 20_000;
/** How much a sample may exceed the first before the run counts it as growth. */
const BOUNDS = { heapMiB: 32, sockets: 16, timers: 100, keys: 2000 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const violations: string[] = [];
const violate = (what: string) => {
  violations.push(what);
  console.error(`[soak] VIOLATION ${what}`);
};
const calls = { locks: 0, once: 0, batches: 0, elections: 0, errors: 0 };
const faults: Record<string, number> = {};

interface Sample {
  minute: number;
  heapMiB: number;
  sockets: number;
  timers: number;
  keys: number;
}

async function main(): Promise<void> {
  const net = await Network.create();
  const stores: Store[] = [];
  let resource: Redis | undefined;
  let admin: Redis | undefined;
  const elections: Election[] = [];
  try {
    const [server, res] = await Promise.all([net.startRedis('store'), net.startRedis('res')]);
    const storeParty = net.party('store');
    resource = new Redis({ host: res.host, port: res.port, protocol: 2 });
    admin = new Redis({ host: res.host, port: res.port, protocol: 2 });
    const countKeys = async () => {
      const c = new Redis({ host: server.host, port: server.port, protocol: 2, lazyConnect: true });
      try {
        return await c.dbsize();
      } finally {
        c.disconnect();
      }
    };
    const store = redisStore({ host: server.host, port: server.port, timeoutMs: 500 });
    stores.push(store);
    const lock = createLock(store);
    const fenced = async (key: string, fence: number, writer: string) =>
      resource!.eval(FENCED_WRITE, 2, `${key}:fence`, `${key}:log`, fence, writer);
    const deadline = performance.now() + durationMs;
    const running = () => performance.now() < deadline;
    const quiet = () => {}; // withOnce's log lines: formatted, not written

    // Locks: in-process holders of a few hot keys; a holder inside its validity while another is = violation.
    const holders = new Map<string, { id: number; validUntil: () => number }>();
    let holderIds = 0;
    const lockWorker = async () => {
      while (running()) {
        const key = `soak-lock-${Math.floor(Math.random() * HOT_KEYS)}`;
        const id = ++holderIds;
        await lock
          .using(
            key,
            async (lease) => {
              calls.locks++;
              const other = holders.get(key);
              if (other && other.id !== id && other.validUntil() > performance.now() + 5)
                violate(`lock ${key}: holder ${id} granted while holder ${other.id} is valid`);
              holders.set(key, { id, validUntil: () => (lease.held ? lease.validUntil : 0) });
              await fenced(key, lease.fence, String(id));
              await sleep(20 + Math.random() * 80);
              if (holders.get(key)?.id === id) holders.delete(key);
            },
            { ttlMs: TTL_MS, retry: { attempts: 5, delayMs: 50, jitterMs: 50 }, onError: quiet },
          )
          .catch(() => calls.errors++);
      }
    };

    // withOnce and batches over one pool of ids: a key's handler running twice at once = violation.
    const inFlight = new Set<string>();
    const onceBody = async (id: string, fence: number) => {
      if (inFlight.has(id)) violate(`withOnce ${id}: ran twice at once`);
      inFlight.add(id);
      try {
        await fenced(`soak-once-${id}`, fence, id);
        await sleep(5 + Math.random() * 20);
        return { id };
      } finally {
        inFlight.delete(id);
      }
    };
    const onceOptions = { store, ttlMs: TTL_MS, retentionMs: RETENTION_MS, namespace: 'soak', logger: quiet };
    const once = withOnce(async (e: { id: string }, _c, run) => onceBody(e.id, run.fence), {
      ...onceOptions,
      key: (e: { id: string }) => e.id,
    });
    const batch = withOnceBatch(
      async (record, _c, run) => onceBody(record.messageId, run.fence),
      onceOptions,
    );
    const poolId = () => `id-${Math.floor(Math.random() * ID_POOL)}`;
    const onceWorker = async () => {
      while (running()) {
        calls.once++;
        await once({ id: poolId() }, lambdaContext(30_000)).catch(() => calls.errors++);
      }
    };
    const batchWorker = async () => {
      while (running()) {
        calls.batches++;
        const event = {
          Records: Array.from({ length: 5 }, () => ({ messageId: poolId(), body: '{}' })),
        } as unknown as SQSEvent;
        // A batch may hold one id twice: the second is its own duplicate, reported, never run at once.
        await batch(event, lambdaContext(30_000)).catch(() => calls.errors++);
        await sleep(10);
      }
    };

    // Two candidates; both leading at once = violation (each checks the other when it acts).
    for (const id of ['a', 'b']) elections.push(elect({ lock, name: 'soak-leader', id, ttlMs: TTL_MS }));
    const electionWorker = async () => {
      while (running()) {
        for (const [i, e] of elections.entries()) {
          const leadership = e.leadership;
          if (!leadership) continue;
          calls.elections++;
          if (elections[1 - i]?.leadership)
            violate(`election: ${i === 0 ? 'a' : 'b'} and the other lead at once`);
          await fenced('soak-leader', leadership.term, String(i)).catch(() => calls.errors++);
        }
        await sleep(25);
      }
    };

    // Faults on the client's path to the store, one at a time, healed before the next.
    const faultWorker = async () => {
      const kinds = ['cut', 'replies-dropped', 'link-down'] as const;
      while (running()) {
        await sleep(faultEveryMs * (0.5 + Math.random()));
        if (!running()) break;
        const kind = kinds[Math.floor(Math.random() * kinds.length)]!;
        faults[kind] = (faults[kind] ?? 0) + 1;
        if (kind === 'cut') await net.cut(storeParty, net.here);
        else if (kind === 'replies-dropped') await net.drop(storeParty, net.here);
        else await net.down(storeParty);
        await sleep(500 + Math.random() * 1500);
        await net.heal();
      }
    };

    const samples: Sample[] = [];
    const started = performance.now();
    const sample = async () => {
      (globalThis as { gc?: () => void }).gc?.();
      const resources = process.getActiveResourcesInfo();
      const s: Sample = {
        minute: Math.round((performance.now() - started) / 6000) / 10,
        heapMiB: Math.round((process.memoryUsage().heapUsed / 2 ** 20) * 10) / 10,
        sockets: resources.filter((r) => r === 'TCPSocketWrap' || r === 'TLSSocketWrap').length,
        timers: resources.filter((r) => r === 'Timeout').length,
        keys: await countKeys(),
      };
      samples.push(s);
      console.log(`[soak] sample ${JSON.stringify(s)}`);
    };
    const sampler = async () => {
      while (running()) {
        await sleep(Math.min(sampleEveryMs, Math.max(0, deadline - performance.now())));
        await sample();
      }
    };

    console.log(
      `[soak] ${values.minutes} min, a fault every ~${faultEveryMs} ms, a sample every ${sampleEveryMs} ms`,
    );
    await sleep(2000); // warm: connections and scripts
    await sample();
    await Promise.all([
      ...Array.from({ length: 4 }, lockWorker),
      ...Array.from({ length: 4 }, onceWorker),
      batchWorker(),
      electionWorker(),
      faultWorker(),
      sampler(),
    ]);
    await net.heal();

    // Fenced writes: per resource key, no accepted write with a fence below an earlier accepted one.
    const logKeys = await admin.keys('*:log');
    let writes = 0;
    for (const key of logKeys) {
      const log = parseLog(await admin.lrange(key, 0, -1));
      writes += log.length;
      let highest = 0;
      for (const w of log) {
        if (!w.accepted) continue;
        if (w.fence < highest) violate(`fenced ${key}: ${w.fence} accepted after ${highest}`);
        highest = Math.max(highest, w.fence);
      }
    }

    // Growth is measured from the first sample under load (the one before it is taken before any call).
    const first = samples[1] ?? samples[0]!;
    const last = samples.at(-1)!;
    const growth = [
      last.heapMiB - first.heapMiB > BOUNDS.heapMiB
        ? `heap +${(last.heapMiB - first.heapMiB).toFixed(1)} MiB`
        : '',
      last.sockets - first.sockets > BOUNDS.sockets ? `sockets +${last.sockets - first.sockets}` : '',
      last.timers - first.timers > BOUNDS.timers ? `timers +${last.timers - first.timers}` : '',
      last.keys - first.keys > BOUNDS.keys ? `keys +${last.keys - first.keys}` : '',
    ].filter(Boolean);
    const summary = {
      minutes: Number(values.minutes),
      calls,
      faults,
      fencedWrites: writes,
      violations: violations.length,
      beforeLoad: samples[0],
      first,
      last,
      growth,
    };
    console.log(`[soak] summary ${JSON.stringify(summary)}`);
    if (violations.length > 0 || growth.length > 0) {
      console.error(
        `[soak] FAILED: ${violations.length} violation(s); growth: ${growth.join(', ') || 'none'}`,
      );
      process.exitCode = 1;
    } else console.log('[soak] PASSED: 0 violations, nothing grew beyond its bound');
  } finally {
    await Promise.all(elections.map((e) => e.resign().catch(() => undefined)));
    await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
    resource?.disconnect();
    admin?.disconnect();
    await net.destroy();
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
