/**
 * The "Notes" section of docs/benchmarks.md: where each result comes from, in the run's own figures (CPU
 * per operation on each side, the same scripts without the library, bytes per package), and how each side is
 * configured. Every figure here is computed from the run passed in, or is a target or a configured constant
 * (a target's limit as the verdict uses it, the bench's sizes, the suites' shared configuration). What earlier
 * passes tried and measured is in docs/bench-history.md, written by hand with its commit and date, and only
 * linked from here: a figure of a past run is never printed as this run's.
 */
import { BATCH_CALLS } from '../layers/oncely/src/transport/upstash-client.js';
import type { SequentialResult } from './harness.js';
import { CONFIG } from './once-config.js';
import { type BenchData, isSkipped } from './report.js';
import { cpuFailNote } from './report-cpu.js';
import { scalingFailNote } from './report-scaling.js';
import type { OpCount } from './roundtrips.js';
import {
  type Evaluated,
  fmtBytes,
  fmtCount,
  fmtMs,
  fmtRatio,
  fmtValue,
  median,
  ratioOfRounds,
} from './stats.js';
import { effectsFailNote } from './suite-effects.js';

/** Where the past measurements live (relative to docs/benchmarks.md). */
export const HISTORY = 'bench-history.md';

const find = <T extends { id: string }>(xs: readonly T[] | undefined, id: string) =>
  xs?.find((x) => x.id === id);
const med = (xs: number[]) => median(xs.filter(Number.isFinite));
const client = (r?: SequentialResult) => med(r?.rounds.map((x) => x.cpuUs) ?? []);
const server = (r: SequentialResult | undefined, name: string) =>
  med(r?.rounds.map((x) => x.serverUs[name] ?? Number.NaN) ?? []);
const us = (x: number) => (Number.isFinite(x) ? `${Math.round(x)} µs` : 'n/a');
/** What one microsecond is of a pair of `p50` ms. */
const pct = (p50?: number) => (p50 ? `${(0.1 / p50).toFixed(1)} %` : 'n/a');
const ms = (r?: SequentialResult) => `${fmtMs(r?.summary.p50 ?? Number.NaN)} ms`;
const p50Ratio = (a?: SequentialResult, b?: SequentialResult) =>
  fmtRatio(ratioOfRounds(a?.rounds.map((x) => x.p50) ?? [], b?.rounds.map((x) => x.p50) ?? []));
/** A counted figure: round trips as the run counted them. */
const trips = (c?: OpCount) => (c ? fmtCount(c.roundTrips) : 'n/a');
/** A link to a section of the history file. */
const past = (anchor: string, text = 'what earlier passes tried and measured') =>
  `[${text}](${HISTORY}#${anchor})`;

export function notes(d: BenchData, results: readonly Evaluated[]): string {
  const verdict = (id: string) => results.find((r) => r.id === id)?.verdict ?? 'NOT RUN';
  /** A target's goal as the verdict uses it, e.g. "≤ 1.15×". */
  const goal = (id: string) => {
    const r = results.find((x) => x.id === id);
    if (!r) return 'n/a';
    return `${r.op === '<=' ? '≤' : r.op === '>=' ? '≥' : '='} ${fmtValue(r.unit, r.limit)}`;
  };
  /** One bullet: the parts joined by spaces. */
  const bullet = (...parts: string[]) => `- ${parts.join(' ')}`;
  const out: string[] = [];

  const tcp = isSkipped(d.tcp) ? undefined : d.tcp;
  if (tcp) {
    const o = find(tcp.sequential, 'oncely');
    const raw = find(tcp.sequential, 'raw');
    const fenced = find(tcp.sequential, 'raw-fenced');
    const own = find(tcp.sequential, 'oncely-own');
    const rl = find(tcp.sequential, 'redlock');
    const cl = find(tcp.sequential, 'oncely-cluster');
    const rate = (id: string) => find(tcp.concurrent, id)?.perSecond ?? Number.NaN;
    out.push(
      bullet(
        `**TCP: the library's own overhead and node-redlock** (${verdict('tcp.p50.own')} p50 against`,
        `oncely's own scripts from bare ioredis, ${verdict('tcp.p50.redlock')} p50 and`,
        `${verdict('tcp.rate.redlock')} pairs/s against node-redlock; ${verdict('cpu.client.tcp')} client CPU,`,
        `${verdict('cpu.server.tcp')} redis CPU per pair). Every contender but "own client" and`,
        'the cluster row shares one ioredis client (one connection), so the client is not what differs;',
        'node-redlock runs with `retryCount: 0` and oncely with `tryAcquire` (no retry on either side).',
        'These rows compare oncely with the same scripts sent bare (what the library costs) and with the',
        `best unfenced peer on the same client: pair p50 ${ms(o)} vs ${ms(rl)}, pairs/s`,
        `${Math.round(rate('oncely'))} vs ${Math.round(rate('redlock'))}, client CPU ${us(client(o))} vs`,
        `${us(client(rl))} per pair. Work one side does and the other skips: oncely's acquire also raises the`,
        "fencing counter (after the store's TIME, kept as long as the lease plus the grace period), and every",
        'oncely call has a per-call timeout, key and TTL validation and a Lease with its validity; node-redlock',
        `has none of these. The VPC mode's figure, "${cl?.label ?? 'oncely on a cluster'}" (clusterStore, its`,
        `own Cluster client): pair p50 ${ms(cl)}, ${Math.round(rate('oncely-cluster'))} pairs/s.`,
        'The raw baseline is the floor: SET NX PX and a compare-and-delete, no fencing token.',
        "The same rounds split the gap: oncely's scripts sent from bare ioredis, with no library around",
        `them, run at ${p50Ratio(fenced, raw)} the raw p50 (${ms(fenced)} vs ${ms(raw)}): the fenced`,
        `acquire's cost on the server. The library on top of them runs at ${p50Ratio(o, fenced)}`,
        `(${ms(o)}); client CPU ${us(client(o))} per pair vs ${us(client(fenced))} for the bare`,
        `scripts, redis-server CPU ${us(server(o, 'redis'))} vs ${us(server(raw, 'redis'))} for the raw`,
        `baseline. A pair is ${ms(raw)} on loopback, so each microsecond is ${pct(raw?.summary.p50)} of it,`,
        'and less over a network round trip. With its own client (as fromEnv builds it: ioredis',
        `commandTimeout on) oncely runs at ${p50Ratio(own, raw)} the raw p50.`,
      ),
    );
  }

  const rest = isSkipped(d.rest) ? undefined : d.rest;
  if (rest) {
    const o = find(rest.sequential, 'oncely');
    const u = find(rest.sequential, 'upstash-lock');
    const before = find(rest.sequential, 'oncely-before');
    const counts = rest.counts;
    out.push(
      bullet(
        `**REST vs @upstash/lock** (${verdict('rest.p50')} p50, ${verdict('rest.rate')} pairs/s,`,
        `${verdict('rest.cold')} cold start, ${verdict('cpu.client.rest')} client CPU and`,
        `${verdict('cpu.server.rest')} gateway + redis CPU per pair). Both go through @upstash/redis,`,
        'configured differently (the',
        'client column): @upstash/lock with the client its users build, over fetch with base64-encoded',
        'replies; oncely over its keep-alive node:http requester with raw replies. Requests per pair, as',
        `counted: oncely ${trips(counts.oncely?.acquire)} + ${trips(counts.oncely?.release)}, @upstash/lock`,
        `${trips(counts['upstash-lock']?.acquire)} + ${trips(counts['upstash-lock']?.release)}. Client CPU`,
        `per pair: oncely ${us(client(o))}, @upstash/lock ${us(client(u))}; gateway CPU per pair`,
        `${us(server(o, 'gateway'))} vs ${us(server(u, 'gateway'))} (@upstash/lock's release sends its`,
        `whole script with EVAL, and its replies come base64-encoded). Under ${d.sizes.workers} workers both`,
        'batch: @upstash/redis auto-pipelines every command of a tick into one request, oncely sends up to',
        `${BATCH_CALLS} calls per /pipeline request so that the gateway starts on one while the client`,
        'prepares the next. The gateway and redis-server share the cores with the client, so pairs/s is',
        'bounded by the CPU of all three, and it is the noisiest figure here: see the per-round range in the',
        "targets table. A fresh process's first lock skips fetch's first-use cost.",
      ),
      bullet(
        '**The REST client, before and after.** Until issue 14 the REST transport spoke the protocol by',
        'hand over the same node:http code; that version runs here as "hand-written protocol (before)"',
        '(bench/before.ts reads it from git). Same rounds: pair p50',
        `${ms(o)} through @upstash/redis vs ${ms(before)} by hand (${p50Ratio(o, before)}), client CPU`,
        `${us(client(o))} vs ${us(client(before))} per pair. The client costs bytes rather than`,
        'time per call: see the bundle table (the "before" layer row) for the REST path and its cold start.',
      ),
    );
  }

  if (!isSkipped(d.once)) {
    const first = d.once.first;
    const o = find(first, 'oncely');
    const p = find(first, 'powertools');
    const bare = find(first, 'raw-once');
    const dup = d.once.duplicate;
    const oc = find(dup, 'oncely-cached');
    const pc = find(dup, 'powertools-cached');
    const counts = d.once.counts;
    out.push(
      bullet(
        '**Run-once: how each side is configured.** Both key by the same JMESPath expression, evaluated by',
        'the same package (@aws-lambda-powertools/jmespath, which oncely loads for a `{ jmespath }` key): a',
        `call on \`${CONFIG.callKey}\` (oncely \`key: { jmespath: '${CONFIG.callKey}' }\`, Powertools`,
        `\`eventKeyJmesPath: '${CONFIG.callKey}'\`), with no payload check on either side; an SQS record on`,
        `\`${CONFIG.recordKey}\`, with its \`${CONFIG.recordPayload}\` checked on reuse on both sides (oncely`,
        `\`payload: { jmespath: '${CONFIG.recordPayload}' }\`, Powertools \`payloadValidationJmesPath\`). Both`,
        'keep a completed record for the same time (oncely `retentionMs`, Powertools `expiresAfterSeconds`).',
        'Each side talks through one connection of the client its users use: oncely a shared ioredis client,',
        'Powertools a shared @redis/client client (its cache persistence layer takes @redis/client or Valkey',
        'GLIDE, not ioredis), one persistence layer per configuration. Both run the handler once per call',
        "and write its result as JSON; oncely's decision lines go to a no-op logger (formatted, not written).",
      ),
      bullet(
        `**withOnce vs Powertools** (${verdict('once.first')} first call, ${verdict('once.duplicate')}`,
        `duplicate, ${verdict('once.duplicate.cached')} duplicate with both local caches on; CPU per call:`,
        `${verdict('cpu.client.once.first')} client and ${verdict('cpu.server.once.first')} redis on a first`,
        `call, ${verdict('cpu.client.once.duplicate')} and ${verdict('cpu.server.once.duplicate')} on a`,
        'duplicate).',
        `Round trips on a first call, as counted: oncely ${trips(counts.oncely?.first)}, Powertools`,
        `${trips(counts.powertools?.first)}. Powertools sends plain SETs (in progress with NX, then the`,
        'result, overwriting unconditionally); oncely runs scripts that compare the owner token, raise the',
        'fence and keep the payload hash. The split, from the same rounds: the two scripts sent from bare',
        `ioredis run at ${p50Ratio(bare, p)} Powertools' p50 (${ms(bare)} vs ${ms(p)}); withOnce on top of`,
        `them at ${p50Ratio(o, bare)} (${ms(o)}: the key expression and its digest, the record driver and`,
        'its halfway timer, the decision line). withOnce does more than Powertools per call — it hands out a',
        'fence and a lost-lease signal and never overwrites a record it does not own — and this gap is the',
        `price of that. Client CPU per call ${us(client(o))} vs ${us(client(p))}, redis-server CPU`,
        `${us(server(o, 'redis'))} vs ${us(server(p, 'redis'))}. Round trips on a duplicate, as counted:`,
        `oncely ${trips(counts.oncely?.duplicate)} (one script), Powertools`,
        `${trips(counts.powertools?.duplicate)} (SET NX, then GET); p50`,
        `${p50Ratio(find(dup, 'oncely'), find(dup, 'powertools'))} Powertools'.`,
      ),
      bullet(
        '**The local caches.** The cached row compares withOnce with `localCache` on against Powertools with',
        `\`useLocalCache\` on, both holding up to ${fmtCount(CONFIG.localCacheEntries)} completed records, each`,
        `until the record expires; the ${fmtCount(CONFIG.duplicatePool)} events each row replays fit both. A`,
        `warm container answers a duplicate from memory: oncely ${ms(oc)} p50, ${us(client(oc))} client CPU,`,
        `${trips(counts['oncely-cached']?.duplicate)} round trips; Powertools ${ms(pc)}, ${us(client(pc))},`,
        `${trips(counts['powertools-cached']?.duplicate)} round trips (counted at a proxy): ${p50Ratio(oc, pc)}.`,
        'Work one side does and the other skips: oncely keeps the stored text and decodes it afresh on every',
        'hit (a caller cannot change what the next duplicate gets); Powertools keeps the record object and',
        'hands back the same result object each time.',
      ),
    );
    const ob = find(d.once.batch, 'oncely');
    const pb = find(d.once.batch, 'powertools');
    const bc = d.once.batchCounts;
    out.push(
      bullet(
        `**SQS batch of ${fmtCount(CONFIG.batchSize)}** (${verdict('once.batch')} p50,`,
        `${verdict('cpu.client.batch')} client CPU, ${verdict('cpu.server.batch')} redis CPU per batch): round`,
        'trips per batch, as counted: oncely',
        `${trips(bc.oncely)}, Powertools ${trips(bc.powertools)}. oncely claims every record in one pipeline`,
        'and completes them in one; Powertools runs the records in parallel and @redis/client writes the',
        'commands issued in one tick together. Commands per batch (the commands column): oncely',
        `${bc.oncely?.commands || 'n/a'}; Powertools ${bc.powertools?.commands || 'n/a'}.`,
        `p50 ${ms(ob)} vs ${ms(pb)}, redis-server CPU per batch ${us(server(ob, 'redis'))} vs`,
        `${us(server(pb, 'redis'))}, client CPU per batch ${us(client(ob))} vs ${us(client(pb))}.`,
      ),
    );
  }

  if (!isSkipped(d.bundles)) {
    const b = d.bundles;
    const entry = find(b, 'oncely-tcp-entry');
    const jmes = (x?: { byPackage: Record<string, number> }) =>
      (x?.byPackage['@aws-lambda-powertools/jmespath'] ?? 0) +
      (x?.byPackage['@aws-lambda-powertools/commons'] ?? 0);
    const parts = (x?: { byPackage: Record<string, number> }) =>
      Object.entries(x?.byPackage ?? {})
        .sort((p, q) => q[1] - p[1])
        .filter(([, n]) => n >= 1024)
        .map(([k, n]) => `${k} ${fmtBytes(n)}`)
        .join(', ');
    out.push(
      bullet(
        `**Bytes** (${verdict('size.rest.layer')} layer REST path, ${verdict('size.rest.entry')} REST`,
        `lock entry, ${verdict('size.tcp.entry')} TCP lock entry, ${verdict('size.tcp.layer')} layer TCP`,
        'path), of the layer that ships: one esbuild bundle, minified, its dependencies inlined (issue 23):',
        'the index and its chunks (the lock path is one file: scripts/build.ts lockPath, scripts/layer-fold.ts),',
        "and the chunks the path loads when the store is created. The REST path's are the REST store's code,",
        `oncely's requester and @upstash/redis (${parts(find(b, 'oncely-rest-index'))}); before issue 14,`,
        `with the protocol spoken by hand, it was ${fmtBytes(find(b, 'oncely-rest-before')?.bytes ?? Number.NaN)}.`,
        'The REST targets compare like for like: the REST lock entry against @upstash/lock with the same',
        `client (${goal('size.rest.entry')}: what fences, give-back and the requester add to a lock), and the`,
        `whole layer against the client alone (${goal('size.rest.layer')}: every feature of oncely together`,
        'against the weight of its client). JMESPath is loaded only for a `{ jmespath }` key spec, so no',
        `path counts it (${fmtBytes(jmes(entry))} in the TCP lock entry).`,
        "The layer's index loads the lock API, Redlock, leader election and withOnce's option checks",
        'wherever it is used; withOnce, withOnceBatch and oncePerTick load the run-once engine when a handler',
        "is made (once/lazy.ts), and ioredis's debug is a 1 KiB stand-in (scripts/layer-debug.cjs). Its TCP",
        `path is ${parts(find(b, 'oncely-tcp-index'))}. A function that`,
        'only takes locks imports `oncely/locks` instead, which loads the lock, its stores and their errors:',
        `its REST path is ${parts(find(b, 'oncely-rest'))}, its TCP path ${parts(find(b, 'oncely-tcp'))}.`,
      ),
    );
  }

  if (!isSkipped(d.ceiling) && tcp) {
    const set1 = d.ceiling.find((r) => r.label === 'SET' && r.clients === 1);
    out.push(
      bullet(
        "**Scale**: redis-benchmark's single connection does one SET round trip in",
        `${fmtMs(set1?.p50 ?? Number.NaN)} ms (p50); a lock pair from Node is two round trips plus the`,
        `client, ${ms(find(tcp.sequential, 'raw'))} at best here.`,
      ),
    );
  }
  out.push(
    bullet(
      `**Past measurements.** What earlier passes tried, and what it measured then, is in [${HISTORY}](${HISTORY}),`,
      'each with its commit and date: a record of those runs, not of this one.',
    ),
  );
  out.push(...failNotes(d, results));
  return out.join('\n');
}

/**
 * One paragraph per row left FAIL: this run's figures for it, what stays of the gap and why, and a link to
 * what earlier passes tried (docs/bench-history.md). Every figure comes from this run.
 */
function failNotes(d: BenchData, results: readonly Evaluated[]): string[] {
  const failed = results.filter((r) => r.verdict === 'FAIL');
  if (failed.length === 0) return [];
  const tcp = isSkipped(d.tcp) ? undefined : d.tcp;
  const once = isSkipped(d.once) ? undefined : d.once;
  const load = d.machine.loadAverage.map((x) => x.toFixed(1)).join(' ');
  const range = (r: Evaluated) =>
    r.spread && Number.isFinite(r.spread[0])
      ? `single rounds ranged ${fmtRatio(r.spread[0])}–${fmtRatio(r.spread[1])}`
      : 'no per-round range';
  const out: string[] = [
    '',
    `### Rows left FAIL (${failed.length})`,
    '',
    `The run started at load average ${load} on ${d.machine.cores} cores (a shared machine: the figure`,
    'includes what ran just before). Every ratio here is measured in the same interleaved rounds, and the',
    'per-round range says how much of a gap is the machine.',
    '',
  ];
  const lines = (id: string, r: Evaluated): string | undefined => {
    const v = `${fmtRatio(r.actual ?? Number.NaN, 3)} (${range(r)})`;
    if (id.startsWith('cpu.')) return cpuFailNote(d, r);
    if (id === 'once.batch') {
      const ob = find(once?.batch, 'oncely');
      const pb = find(once?.batch, 'powertools');
      const bc = once?.batchCounts;
      return (
        `**${r.label}: ${v}.** This run: p50 ${ms(ob)} vs ${ms(pb)} per batch, round trips ` +
        `${trips(bc?.oncely)} vs ${trips(bc?.powertools)}, client CPU ${us(client(ob))} vs ${us(client(pb))}, ` +
        `redis-server CPU ${us(server(ob, 'redis'))} vs ${us(server(pb, 'redis'))} per batch. What differs ` +
        `beyond the round trips is the work per record; on the server, oncely's commands per batch are ` +
        `${bc?.oncely?.commands || 'n/a'} (claims and completions that compare the owner token and keep ` +
        `the fence), Powertools' ${bc?.powertools?.commands || 'n/a'}.`
      );
    }
    if (id === 'tcp.p50.own' || id === 'tcp.p50.redlock' || id === 'tcp.rate.redlock') {
      const o = find(tcp?.sequential, 'oncely');
      const rl = find(tcp?.sequential, 'redlock');
      const bare = find(tcp?.sequential, 'raw-fenced');
      return (
        `**${r.label}: ${v}.** This run: client CPU ${us(client(o))} per pair for oncely, ` +
        `${us(client(bare))} for its scripts sent bare, ${us(client(rl))} for node-redlock; redis-server CPU ` +
        `${us(server(o, 'redis'))} per pair for oncely against ${us(server(rl, 'redis'))} for node-redlock ` +
        "(its acquire is a plain SET NX PX; oncely's also reads TIME and writes the fence counter with its " +
        'lifetime). What stays: the per-call timeout (a call must not hang past timeoutMs), key and TTL ' +
        'validation, the token, the Lease with its validity and drift, the ambiguous-failure give-back, and ' +
        'on the server the fence, which is what makes the lock safe to act on; node-redlock has none of these. ' +
        `Under load the client, redis-server and the other suites share the cores, so a few µs of client CPU ` +
        `show as a larger latency ratio than on an idle machine. See ${past('tcp-lock-pair')}.`
      );
    }
    if (id.startsWith('redlock')) {
      const masters = Number(/^redlock(\d+)/.exec(id)?.[1]);
      const suite = d.redlock.find((x) => !isSkipped(x) && x.name === `Redlock ${masters}`);
      const seq = suite && !isSkipped(suite) ? suite.sequential : undefined;
      return (
        `**${r.label}: ${v}.** This run: client CPU ${us(client(find(seq, 'oncely')))} per pair vs ` +
        `${us(client(find(seq, 'redlock')))} for node-redlock, on the same clients. What stays is mostly the ` +
        'protocol, not the library: the fence counter is a second key (more arguments per call and a ' +
        'two-element reply per node), ACQUIRE writes it and RELEASE keeps its lifetime, where node-redlock ' +
        'sends SET NX / compare-and-delete on one key, and a Redlock pays that on every node. The fence, its ' +
        `lifetime and the give-back of partial grants are what the lock is for. See ${past('redlock')}.`
      );
    }
    if (id === 'once.first') {
      const o = find(once?.first, 'oncely');
      const bare = find(once?.first, 'raw-once');
      const p = find(once?.first, 'powertools');
      return (
        `**${r.label}: ${v}.** This run: ${us(client(o))} client CPU per call vs ${us(client(bare))} for the ` +
        `two scripts sent bare and ${us(client(p))} for Powertools. The two scripts alone run at ` +
        `${p50Ratio(bare, p)} Powertools' p50 here (scripts that compare the owner token, raise the fence and ` +
        'keep the payload hash cost redis-server more than plain SETs), and on top of them come the token (a ' +
        'fresh CSPRNG draw, never pooled: a pool drawn before a snapshot would hand every restored copy the ' +
        'same tokens), the key expression and its digest, the lease and its halfway timer, and the decision ' +
        `lines formatted per call. See ${past('run-once-first-call')}.`
      );
    }
    if (id === 'once.duplicate' || id === 'once.duplicate.cached') {
      const dup = once?.duplicate;
      const cached = id === 'once.duplicate.cached';
      const o = find(dup, cached ? 'oncely-cached' : 'oncely');
      const p = find(dup, cached ? 'powertools-cached' : 'powertools');
      if (cached)
        return (
          `**${r.label}: ${v}.** Both answer from memory: oncely ${ms(o)} p50, ${us(client(o))} client CPU ` +
          `per duplicate, Powertools ${ms(p)}, ${us(client(p))}. oncely decodes the stored text on every hit ` +
          'and formats its decision line; Powertools hands back the object it keeps.'
        );
      const bare = find(dup, 'raw-once');
      return (
        `**${r.label}: ${v}.** One script for oncely against SET NX then GET for Powertools: the script ` +
        `sent bare runs at ${p50Ratio(bare, p)} Powertools' p50 (${ms(bare)} vs ${ms(p)}), withOnce at ` +
        `${ms(o)}, client CPU ${us(client(o))} vs ${us(client(bare))} bare and ${us(client(p))} for ` +
        "Powertools. The rest of the library's share is the token drawn before the claim (it may take the " +
        'record), the key expression and its digest, decoding the stored result and the decision line. The ' +
        `local cache row is the answer for warm containers. See ${past('run-once-duplicate')}.`
      );
    }
    if (id === 'rest.cold') {
      const cold = isSkipped(d.cold) ? undefined : d.cold;
      const b = isSkipped(d.bundles) ? undefined : d.bundles;
      const phases = (cid: string) => {
        const c = find(cold, cid);
        return c
          ? `${fmtMs(c.total)} ms (import ${fmtMs(c.load)} + first lock ${fmtMs(c.first)})`
          : 'not run';
      };
      const own = (bid: string) => fmtBytes(find(b, bid)?.byPackage.oncely ?? Number.NaN);
      return (
        `**${r.label}: ${v}.** A function that only takes locks imports them from oncely/locks, which ` +
        `loads ${own('oncely-rest')} of the package against the whole index's ${own('oncely-rest-index')} ` +
        `(this run's bundles). This run: oncely/locks ${phases('oncely-rest')}, the whole index ` +
        `${phases('oncely-rest-index')}, @upstash/lock ${phases('upstash-lock')}. The layer is one bundle ` +
        '(issue 23): its import is the lock code and node:crypto, its first lock the chunk of @upstash/redis ' +
        `and one round trip. See ${past('rest-cold-start')}.`
      );
    }
    if (id === 'tcp.cold') {
      const cold = isSkipped(d.cold) ? undefined : d.cold;
      const phases = (cid: string) => {
        const c = find(cold, cid);
        return c
          ? `${fmtMs(c.total)} ms (import ${fmtMs(c.load)} + first lock ${fmtMs(c.first)})`
          : 'not run';
      };
      return (
        `**${r.label}: ${v}.** This run: oncely/locks with oncely/ioredis ${phases('oncely-tcp')}, ` +
        `redlock + ioredis ${phases('redlock')}, ioredis alone ${phases('ioredis')}. Both load the same ` +
        "ioredis, minified: redlock's bundle at import, the layer's chunk when the first store is created " +
        '(at module scope in a function, so in the init phase). The rest is the lock code, the fence and ' +
        `the store's first scripts (EVAL, then EVALSHA). See ${past('bytes')}.`
      );
    }
    if (id.startsWith('rest.')) {
      return (
        `**${r.label}: ${v}.** Both contenders go through @upstash/redis to the same gateway, which ` +
        'shares the cores with redis-server and the client; REST figures are the noisiest here (see the ' +
        'range). oncely is the cheaper client per pair (the REST bullet above: client and gateway CPU); the ' +
        'p50 is mostly the gateway and redis-server, which both contenders share. See ' +
        `${past('rest-lock-pair')}.`
      );
    }
    if (id.startsWith('scale.')) return scalingFailNote(d.scaling, r);
    if (id.startsWith('effects.')) return effectsFailNote(d.effects, r);
    if (id.startsWith('size.')) {
      const b = isSkipped(d.bundles) ? undefined : d.bundles;
      const which =
        id === 'size.tcp.entry'
          ? 'oncely-tcp-entry'
          : id === 'size.tcp.layer'
            ? 'oncely-tcp-index'
            : id === 'size.rest.entry'
              ? 'oncely-rest-entry'
              : 'oncely-rest-index';
      const parts = Object.entries(find(b, which)?.byPackage ?? {})
        .sort((x, y) => y[1] - x[1])
        .filter(([, n]) => n >= 2048)
        .map(([k, n]) => `${k} ${fmtBytes(n)}`)
        .join(', ');
      const deps = Object.entries(find(b, which)?.byPackage ?? {})
        .filter(([k]) => k !== 'oncely' && k !== 'entry')
        .reduce((sum, [, n]) => sum + n, 0);
      const depsRatio =
        deps / (find(b, id === 'size.rest.layer' ? 'upstash-redis' : 'ioredis')?.bytes ?? Number.NaN);
      const extra =
        id === 'size.tcp.layer' || id === 'size.rest.layer'
          ? " The layer's dependencies are inlined and minified as the contender's are: they alone are " +
            `${fmtRatio(depsRatio, 2)} the contender's whole bundle here, which leaves oncely's own code ` +
            `${fmtRatio(r.limit - depsRatio, 2)} of it under the target. The layer index loads the lock API, ` +
            "Redlock, leader election and withOnce's option checks on either path (the run-once engine loads " +
            'when a handler is made): reaching the target would also take Redlock and leader election behind ' +
            'first use, and a smaller lock core (see the lock entry rows).'
          : ' The entry bundles only what a lock needs (tree-shaken): the Lock with using(), ' +
            'oncePerWindow(), status(), resume() and key sets, the Lease, the retry loop, the scripts of ' +
            'all of these, the error classes and the transport. Reaching the target would take features ' +
            'out of the Lock class (key sets, windows) into functions of their own, which changes the API, so ' +
            'it was not done.';
      return (
        `**${r.label}: ${v}.** This run: ${parts}.${extra} Cold start (the bundle table) is what these bytes ` +
        `cost. See ${past('bytes')}.`
      );
    }
    return undefined;
  };
  for (const r of failed) {
    const text = lines(r.id, r);
    if (text) out.push(`- ${text}`);
  }
  return out;
}
