/**
 * `npm run bench -- --only latency`: the lock pair and withOnce rows at a real round trip, as Lambda sees
 * ElastiCache or Upstash (0.5-2 ms, jittered), not loopback's ~0.05 ms. Every contender, ours and the peers,
 * talks through the same user-space delay proxy (test/support/delay-proxy.ts: order-keeping, since this
 * kernel has no `tc netem`): one in front of redis-server (TCP rows) and one in front of the gateway (REST
 * row). At that round trip the figures are round trips, not CPU: oncely's lock pair should match
 * node-redlock's (both 2 round trips), its first call Powertools' (2 each), and its duplicate take half of
 * Powertools' (1 against 2).
 */
import { Redis } from 'ioredis';
import { type DelayProxy, startDelayProxy } from '../test/support/delay-proxy.js';
import { type SequentialResult, sequential } from './harness.js';
import { loadRawScripts, oncelyTcp, pairOf, rawTcp, redlockTcp } from './locks.js';
import { CONFIG } from './once-config.js';
import type { Stack } from './servers.js';
import { ratioOfRounds, type Summary, summarize } from './stats.js';
import type { Sizes } from './suite-locks.js';
import { callContenders, type Layer, libs } from './suite-once.js';

/** The round trip the proxies add, ms (uniform between the two, half each way). */
export const LATENCY_RTT = { minRttMs: 0.5, maxRttMs: 2 };

export interface LatencySuiteResult {
  rtt: typeof LATENCY_RTT;
  /** PING through the TCP proxy: the round trip every row pays. */
  ping: Summary;
  locks: SequentialResult[];
  first: SequentialResult[];
  duplicate: SequentialResult[];
  /** oncely's p50 over the peer's, median of per-round ratios. */
  ratios: { lockPairVsRedlock: number; firstVsPowertools: number; duplicateVsPowertools: number };
}

const p50s = (rows: SequentialResult[], id: string) =>
  rows.find((r) => r.id === id)?.rounds.map((x) => x.p50) ?? [];

export async function latencySuite(
  stack: Stack,
  sizes: Sizes,
  log: (s: string) => void,
): Promise<LatencySuiteResult> {
  const layer: Layer = await import('../layers/oncely/src/index.js');
  await loadRawScripts(stack.admin);
  const proxies: DelayProxy[] = [];
  const gateway = new URL(stack.gateway.url);
  const tcp = await startDelayProxy({ target: stack.redis, ...LATENCY_RTT });
  proxies.push(tcp);
  const rest = await startDelayProxy({
    target: { host: gateway.hostname, port: Number(gateway.port) },
    ...LATENCY_RTT,
  });
  proxies.push(rest);
  const client = new Redis({ host: tcp.host, port: tcp.port, protocol: 2 });
  const l = await libs(layer, tcp, `http://${rest.host}:${rest.port}`);
  // Each operation costs milliseconds here: fewer of them than on loopback, the same rounds.
  const seqSizes = { ...sizes, perRound: Math.min(sizes.perRound, 100), warmup: 30 };
  try {
    const pings: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      await client.ping();
      pings.push(performance.now() - t0);
    }
    const ping = summarize(pings);
    log(
      `  latency: PING through the proxy p50 ${ping.p50.toFixed(2)} ms (asked ${LATENCY_RTT.minRttMs}-${LATENCY_RTT.maxRttMs})`,
    );
    log('  latency: lock pairs');
    const lockContenders = [oncelyTcp(client), redlockTcp([client]), rawTcp(client)];
    const locks = await sequential(lockContenders.map(pairOf), { ...seqSizes, tag: 'bench:lat:lock' });
    await Promise.all(lockContenders.map((c) => c.close()));
    const { first, duplicate } = callContenders(l, CONFIG.duplicatePool);
    log('  latency: run-once first calls');
    const firstRows = await sequential(first, { ...seqSizes, tag: 'bench:lat:once1' });
    log('  latency: run-once duplicate calls');
    const dupRows = await sequential(duplicate, { ...seqSizes, tag: 'bench:lat:once2' });
    const ratios = {
      lockPairVsRedlock: ratioOfRounds(p50s(locks, 'oncely'), p50s(locks, 'redlock')),
      firstVsPowertools: ratioOfRounds(p50s(firstRows, 'oncely'), p50s(firstRows, 'powertools')),
      duplicateVsPowertools: ratioOfRounds(p50s(dupRows, 'oncely'), p50s(dupRows, 'powertools')),
    };
    for (const [title, rows] of [
      ['lock pair', locks],
      ['withOnce first call', firstRows],
      ['withOnce duplicate', dupRows],
    ] as const) {
      for (const r of rows)
        log(`    ${title.padEnd(20)} ${r.label.padEnd(60)} p50 ${r.summary.p50.toFixed(2)} ms`);
    }
    log(
      `  latency: oncely / peer p50: lock pair ${ratios.lockPairVsRedlock.toFixed(2)}x node-redlock, ` +
        `first call ${ratios.firstVsPowertools.toFixed(2)}x Powertools, duplicate ${ratios.duplicateVsPowertools.toFixed(2)}x`,
    );
    return { rtt: LATENCY_RTT, ping, locks, first: firstRows, duplicate: dupRows, ratios };
  } finally {
    await l.close();
    client.disconnect();
    await Promise.all(proxies.map((p) => p.close()));
  }
}

/** docs/benchmarks.md's section: each row's p50 through the delay proxy, oncely against its peer. */
export function latencySection(result: LatencySuiteResult | { skipped: string } | undefined): string {
  const title = '## At a real round trip (0.5-2 ms, delay proxy): lock pair and withOnce';
  if (result === undefined || 'skipped' in result)
    return `${title}\n\nNot run: ${result?.skipped ?? 'no figures'} (\`npm run bench -- --only latency\`).`;
  const p50 = (rows: SequentialResult[], id: string) => rows.find((r) => r.id === id)?.summary.p50;
  const fmt = (ms: number | undefined) => (ms === undefined ? '–' : ms.toFixed(2));
  const rows: [string, SequentialResult[], string, number][] = [
    ['lock acquire + release (TCP)', result.locks, 'redlock', result.ratios.lockPairVsRedlock],
    ['withOnce first call (TCP)', result.first, 'powertools', result.ratios.firstVsPowertools],
    ['withOnce duplicate (TCP)', result.duplicate, 'powertools', result.ratios.duplicateVsPowertools],
  ];
  return [
    title,
    '',
    `Every contender through the same user-space delay proxy (each way, half of a round trip drawn from ` +
      `${result.rtt.minRttMs}-${result.rtt.maxRttMs} ms, order kept; Node's timers add about 1 ms ` +
      `per hop): a PING took ${fmt(result.ping.p50)} ms (p50). Here round trips decide, as for a Lambda ` +
      'talking to ElastiCache or Upstash; on loopback (the tables above) CPU does.',
    '',
    '| operation | oncely p50, ms | peer | peer p50, ms | oncely / peer (median of rounds) |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map(([name, rs, peer, ratio]) => {
      const label = rs.find((r) => r.id === peer)?.label ?? peer;
      return `| ${name} | ${fmt(p50(rs, 'oncely'))} | ${label} | ${fmt(p50(rs, peer))} | ${ratio.toFixed(2)}× |`;
    }),
    '',
    `REST through the same proxy in front of the gateway: withOnce first call ${fmt(p50(result.first, 'oncely-rest'))} ms, ` +
      `duplicate ${fmt(p50(result.duplicate, 'oncely-rest'))} ms (p50).`,
  ].join('\n');
}
