/**
 * The "Notes" section of docs/benchmarks.md: where each result comes from, in the run's own figures (CPU
 * per operation on each side, the same scripts without the library, bytes per package). Only what the run
 * measured.
 */
import type { SequentialResult } from './harness.js';
import { type BenchData, isSkipped } from './report.js';
import { scalingFailNote } from './report-scaling.js';
import { type Evaluated, fmtBytes, fmtMs, fmtRatio, median, ratioOfRounds } from './stats.js';

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

export function notes(d: BenchData, results: readonly Evaluated[]): string {
  const verdict = (id: string) => results.find((r) => r.id === id)?.verdict ?? 'NOT RUN';
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
        `${verdict('tcp.rate.redlock')} pairs/s against node-redlock). The old targets against raw SET NX`,
        'compared a fenced lock with an unfenced one; these compare oncely with the same scripts sent bare',
        '(what the library costs) and with the best unfenced peer on the same client (node-redlock sends',
        `SET NX PX and an EVAL release): pair p50 ${ms(o)} vs ${ms(rl)}, pairs/s`,
        `${Math.round(rate('oncely'))} vs ${Math.round(rate('redlock'))}, client CPU ${us(client(o))} vs`,
        `${us(client(rl))} per pair. The acquire measured here includes the fence-lifetime change (the`,
        'counter is read and written back with SET PX, living as long as the lease plus the grace period, after',
        "the store's TIME), in the same rounds for oncely and for its bare scripts. The VPC mode's figure, oncely on a 3-master",
        `cluster (clusterStore, its own Cluster client): pair p50 ${ms(cl)}, ${Math.round(rate('oncely-cluster'))}`,
        'pairs/s (one shard per key, so a pair is still two round trips).',
        'The raw baseline is the floor: SET NX PX and a compare-and-delete, no fencing token.',
        "oncely's acquire is one script that also INCRs the fencing counter (see the commands table).",
        "The same rounds split the gap: oncely's scripts sent from bare ioredis, with no library around",
        `them, run at ${p50Ratio(fenced, raw)} the raw p50 (${ms(fenced)} vs ${ms(raw)}): the fenced`,
        `acquire's cost on the server. The library on top of them runs at ${p50Ratio(o, fenced)}`,
        `(${ms(o)}): token, validation, the Lease, a per-call timeout timer (the Lease's AbortSignal and`,
        `expiry timer are made only when its signal is read); client CPU ${us(client(o))} per pair vs ${us(client(fenced))} for the bare`,
        `scripts, redis-server CPU ${us(server(o, 'redis'))} vs ${us(server(raw, 'redis'))} for the raw`,
        `baseline. A pair is ${ms(raw)} on loopback, so each microsecond is ${pct(raw?.summary.p50)} of it;`,
        'over a network round trip (0.2–1 ms in a VPC) it is 0.05–0.25 %. With its own client (as fromEnv',
        `builds it: ioredis commandTimeout on) oncely runs at ${p50Ratio(own, raw)}.`,
      ),
    );
  }

  const rest = isSkipped(d.rest) ? undefined : d.rest;
  if (rest) {
    const o = find(rest.sequential, 'oncely');
    const u = find(rest.sequential, 'upstash-lock');
    const before = find(rest.sequential, 'oncely-before');
    out.push(
      bullet(
        `**REST vs @upstash/lock** (${verdict('rest.p50')} p50, ${verdict('rest.rate')} pairs/s,`,
        `${verdict('rest.cold')} cold start). Both make two requests per pair, both through`,
        `@upstash/redis. Client CPU per pair: oncely ${us(client(o))} (the client over oncely's`,
        'keep-alive node:http requester),',
        `@upstash/lock ${us(client(u))} (the client over fetch); gateway CPU per pair`,
        `${us(server(o, 'gateway'))} vs ${us(server(u, 'gateway'))} (@upstash/lock's release sends its`,
        'whole script with EVAL, and its replies come base64-encoded). Under 50 workers both batch:',
        '@upstash/redis auto-pipelines every command of a tick into one request, oncely sends up to 32',
        'calls per /pipeline request so that the gateway starts on one while the client prepares the',
        'next. The gateway and redis-server share the two cores with the client, so pairs/s is bounded',
        'by the CPU of all three, and it is the noisiest figure here: see the per-round range in the',
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
    out.push(
      bullet(
        `**withOnce vs Powertools** (${verdict('once.first')} first call, ${verdict('once.duplicate')}`,
        `duplicate, ${verdict('once.duplicate.cached')} duplicate with the local cache).`,
        `With \`localCache\` on, a warm container answers a duplicate from memory: ${ms(find(dup, 'oncely-cached'))}`,
        `p50, ${us(client(find(dup, 'oncely-cached')))} client CPU, 0 round trips (counted at a proxy).`,
        'Both make two round trips on a first call. Powertools sends two plain SETs',
        '(in progress with NX, then the result, overwriting unconditionally); oncely runs two scripts',
        'that compare the owner token, raise the fence and keep the payload hash. The split, from the',
        `same rounds: the two scripts sent from bare ioredis run at ${p50Ratio(bare, p)} Powertools'`,
        `p50 (${ms(bare)} vs ${ms(p)}); withOnce on top of them at ${p50Ratio(o, bare)} (${ms(o)}: key`,
        'digest, payload hash, the record driver and its halfway timer, the decision line). withOnce',
        'does more than Powertools per call — it checks the payload and hands out a fence and a lost-lease',
        'signal — and this gap is the price of that on a loopback round trip of ~0.1 ms.',
        `Client CPU per call ${us(client(o))} vs ${us(client(p))}, redis-server CPU`,
        `${us(server(o, 'redis'))} vs ${us(server(p, 'redis'))}. A duplicate is one script for oncely`,
        'and SET NX then GET for Powertools:',
        `${p50Ratio(find(dup, 'oncely'), find(dup, 'powertools'))}.`,
      ),
    );
    const ob = find(d.once.batch, 'oncely');
    const pb = find(d.once.batch, 'powertools');
    out.push(
      bullet(
        '**SQS batch of 10**: two round trips for both. oncely claims all ten in one pipeline and',
        'completes all ten in one; Powertools runs the ten records in parallel and @redis/client writes',
        'the commands issued in one tick together, so its 20 SETs also cross the wire in two exchanges.',
        `p50 ${ms(ob)} vs ${ms(pb)}, redis-server CPU per batch ${us(server(ob, 'redis'))} vs`,
        `${us(server(pb, 'redis'))} (twenty scripts against twenty SETs).`,
      ),
    );
  }

  if (!isSkipped(d.bundles)) {
    const b = d.bundles;
    const _ioredis = find(b, 'ioredis')?.bytes;
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
        "path), of the layer that ships: the package's index and chunks, and its dependencies' files as",
        "published. The REST path adds the chunk with oncely's requester and @upstash/redis's files, loaded",
        `when the store is created (${parts(find(b, 'oncely-rest-index'))}); before issue 14,`,
        `with the protocol spoken by hand, it was ${fmtBytes(find(b, 'oncely-rest-before')?.bytes ?? Number.NaN)}.`,
        'The REST byte targets were set when oncely did not load @upstash/redis at all; now that the',
        'client is part of the REST path, "bytes / @upstash/redis alone" no longer compares two clients.',
        'They are redefined like for like: the REST lock entry against @upstash/lock with the same client',
        '(≤ 1.15×: what fences, give-back and the requester add to a lock), and the whole layer against',
        'the client alone (≤ 2×: every feature of oncely together may weigh at most as much as its client).',
        'JMESPath is loaded only for a `{ jmespath }` key spec, so no',
        `path counts it (${fmtBytes(jmes(entry))} in the TCP lock entry).`,
        "The layer's index loads all of oncely (locks, Redlock, withOnce, SQS batches, leader, event",
        `keys) wherever it is used; its TCP path is ${parts(find(b, 'oncely-tcp-index'))}. A function that`,
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
  out.push(...failNotes(d, results));
  return out.join('\n');
}

/**
 * One paragraph per row left FAIL: what was tried, what it measured, why the rest of the gap stays. The figures
 * of the profiling (bench/profile.ts, `node --cpu-prof`, 3000 calls after 500 warm-up, interleaved, load
 * average 21–24 on 2 cores) are stated as measured; everything else comes from this run.
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
    if (id === 'tcp.p50.own' || id === 'tcp.p50.redlock' || id === 'tcp.rate.redlock') {
      const o = find(tcp?.sequential, 'oncely');
      const rl = find(tcp?.sequential, 'redlock');
      const bare = find(tcp?.sequential, 'raw-fenced');
      return (
        `**${r.label}: ${v}.** Tried, profiling first (bench/profile.ts lock, lock-raw and node-redlock-1, ` +
        '20 000 pairs after 500 warm-up, bundled, interleaved, load average 2–4), and an in-memory client ' +
        "to isolate oncely's own code (in a real pair the socket write dominates the profile). Found and changed: " +
        'every Lease made an AbortController and an expiry timer (now made only when `signal` is read; ' +
        '`held`, `remainingMs`, `extend` and `release` look at the deadline themselves), its init was ' +
        'copied with a spread (V8 then read it slowly on every access), and a call went through five ' +
        'async layers to reach EVALSHA (now sent straight on the client when it is at hand and no replica ' +
        "WAIT is due; the slot is hashed only on a cluster). oncely's own code with an in-memory client: " +
        '8.1 → 3.7 µs per pair, against 2.4 µs for the same two scripts called bare. Client CPU per pair ' +
        'against redis-server: 42–47 µs before, 37–41 µs after, bare scripts 32–33 µs, node-redlock on the ' +
        'same client 30–34 µs; in one process, interleaved with the bare scripts (the way this bench ' +
        'runs them), 29.5–30.1 µs against 28.5–29.2 µs. Tried and dropped: one timer per connection moved on with refresh() instead ' +
        'of a timer per call (no difference measurable, 37.0–37.6 µs both ways). What stays: the per-call ' +
        'timeout (a call must not hang past timeoutMs), key and TTL validation, the token, the Lease with ' +
        'its validity and drift, the ambiguous-failure give-back; node-redlock has none of these and sends ' +
        `no fence. This run: client CPU ${us(client(o))} per pair for oncely, ${us(client(bare))} for the ` +
        `bare scripts, ${us(client(rl))} for node-redlock; redis-server CPU ${us(server(o, 'redis'))} per ` +
        `pair for oncely against ${us(server(rl, 'redis'))} for node-redlock (its acquire is a plain SET NX ` +
        "PX; oncely's also reads TIME and writes the fence counter with its lifetime). Where the server's " +
        "share goes (bench/profile.ts server, redis-server's time in scripts per pair from INFO " +
        "commandstats, 5000 pairs per round, 6 interleaved rounds, two runs): oncely's scripts 30.5 and " +
        '33.6 µs, the same scripts without the fence counter 15.5 and 17.1 µs, node-redlock 16.1 and 18.0 ' +
        'µs. So without its fence oncely costs the server what node-redlock does; the fence (TIME, the ' +
        'counter read and written back with its lifetime on acquire, its lifetime kept on release) is the ' +
        "server's half of the gap, and it is what makes the lock safe to act on. Tried and dropped for the " +
        "50-worker row: batching calls of one tick into one write, as ioredis's enableAutoPipelining does: " +
        'bare ioredis with it ran 0.55–0.68× the pairs/s of the same client without it (4 rounds of 1 s, ' +
        'the lock scripts), so the TCP transport sends each call as it comes. Under load the client, ' +
        'redis-server and the other suites share two cores, so a few µs of client CPU show as a larger ' +
        'latency ratio than on an idle machine.'
      );
    }
    if (id.startsWith('redlock')) {
      const masters = Number(/^redlock(\d+)/.exec(id)?.[1]);
      const suite = d.redlock.find((x) => !isSkipped(x) && x.name === `Redlock ${masters}`);
      const seq = suite && !isSkipped(suite) ? suite.sequential : undefined;
      return (
        `**${r.label}: ${v}.** Tried, profiling first (bench/profile.ts redlock and node-redlock under ` +
        '--cpu-prof, and the pair over 3 in-memory nodes to isolate the library). The socket writes dominate ' +
        "both sides; oncely's own part was the fan-out: per node and operation a timeout timer and a chain " +
        'of four promises (answer, parse, heard, until), 118 promises per pair. gather() now runs the script ' +
        'on every node with one timer for the fan-out and one reaction per request (52 promises per pair), ' +
        'the TCP call sends EVALSHA straight on a ready client (the TCP-path change), and the token is drawn ' +
        'into a scratch buffer; the acquire awaits no fence raise when the counters agree. In-memory nodes: ' +
        '12.4–13.3 → 8.8–9.2 µs per pair (node-redlock 7.0–7.4 µs with the same fakes). Against 3 ' +
        'redis-servers, in one process, interleaved, minimum of 6 rounds: oncely 104 → 98, 93 → 93 and ' +
        '104 → 103 µs client CPU per pair in three paired runs (load 1–6; the saving is within this ' +
        "machine's noise), node-redlock 72–86 µs, and oncely's own two scripts fanned out from bare ioredis " +
        'with Promise.all 86–110 µs in the same runs. So what stays is mostly the ' +
        'protocol, not the library: the fence counter is a second key (more arguments per call and a ' +
        'two-element reply per node), ACQUIRE writes it and RELEASE keeps its lifetime, where node-redlock ' +
        'sends SET NX / compare-and-delete on one key (redis-server CPU per node and pair is higher ' +
        "too: on one server, oncely's scripts spend 30–34 µs per pair in Lua where the same scripts " +
        'without the fence counter and node-redlock spend 16–18 µs, bench/profile.ts server; a Redlock ' +
        'pays that on every node). The fence, its lifetime and the give-back of partial grants are what ' +
        'the lock is ' +
        `for. This run: client CPU ${us(client(find(seq, 'oncely')))} per pair vs ` +
        `${us(client(find(seq, 'redlock')))} for node-redlock.`
      );
    }
    if (id === 'once.first') {
      const o = find(once?.first, 'oncely');
      const bare = find(once?.first, 'raw-once');
      const p = find(once?.first, 'powertools');
      return (
        `**${r.label}: ${v}.** Tried: profiling withOnce's first call against its two scripts sent raw. ` +
        'The profile showed AsyncLocalStorage: on Node 20 and 22 its first run() turns on promise hooks for ' +
        'the whole process. withOnce uses it only when a second invocation opens while one is open (never ' +
        "in Lambda's one-at-a-time containers), and the REST transport no longer uses one at all (its call " +
        'deadline is handed to the requester synchronously): before that change every contender of this ' +
        'suite ran with promise hooks on after the first REST call (withOnce with an in-memory store: 17 µs ' +
        'per call, 21–23 µs with hooks on). Then: one async layer fewer on each side of the handler (24 → 21 ' +
        'promises per call), the token drawn into a scratch buffer (2.5 → 1.4 µs). In one process against ' +
        'one redis-server, interleaved, minimum of 6 rounds at load 6 (one paired run, within noise): 48.5 → 47.1 µs client CPU per call, ' +
        `against 30 µs for the two scripts raw and 44–46 µs for Powertools. This run: ${us(client(o))} per ` +
        `call vs ${us(client(bare))} raw and ${us(client(p))} for Powertools. What remains: the two scripts ` +
        `alone run at ${p50Ratio(bare, p)} Powertools' p50 here (scripts that compare the owner token, raise ` +
        'the fence and keep the payload hash cost redis-server more than two plain SETs), and on top of them ' +
        'the token (a fresh CSPRNG draw of 16 bytes, 2.6 µs on this machine, never pooled: a pool drawn ' +
        'before a snapshot would hand every restored copy the same tokens), the key ' +
        'digest, the lease and its halfway timer, and two decision lines formatted per call (about 2 µs ' +
        "with the no-op logger of this bench; a line built as text with the invocation's part cached measured " +
        'slower, 16.2–16.6 against 15.8–16.0 µs per call in memory, and was dropped). Beating Powertools by 5 % would need oncely to be faster than ' +
        'its own scripts sent bare, so this row stays FAIL.'
      );
    }
    if (id === 'once.duplicate' || id === 'once.duplicate.cached') {
      const dup = once?.duplicate;
      const o = find(dup, id === 'once.duplicate' ? 'oncely' : 'oncely-cached');
      const bare = find(dup, 'raw-once');
      const p = find(dup, 'powertools');
      return (
        `**${r.label}: ${v}.** One script for oncely against SET NX then GET for Powertools: the script ` +
        `sent bare runs at ${p50Ratio(bare, p)} Powertools' p50 (${ms(bare)} vs ${ms(p)}), withOnce at ` +
        `${ms(o)}, client CPU ${us(client(o))} vs ${us(client(bare))} bare. The changes of the first-call ` +
        'paragraph apply here too (no promise hooks from the REST transport, one async layer fewer, a ' +
        'cheaper token): in one process, interleaved (one paired run, within noise), 25.9 → 24.7 µs client CPU per duplicate against ' +
        '15–16 µs for the script bare and 45–46 µs for Powertools, and quick runs of this suite at load 2–6 ' +
        "put the row at 0.52–0.59× (0.54–0.62× before). The rest of the library's share is the token drawn " +
        'before the claim (it may take the record), identifying the event, the key digest, decoding the ' +
        'stored result and the decision line. The local cache row is the answer for warm containers: no ' +
        'round trip at all.'
      );
    }
    if (id === 'rest.cold') {
      const cold = isSkipped(d.cold) ? undefined : d.cold;
      const phases = (cid: string) => {
        const c = find(cold, cid);
        return c
          ? `${fmtMs(c.total)} ms (import ${fmtMs(c.load)} + first lock ${fmtMs(c.first)})`
          : 'not run';
      };
      return (
        `**${r.label}: ${v}.** Done: a function that only takes locks imports them from oncely/locks, which ` +
        "loads 8 files and 44.6 KiB of the package against the root's 11 files and 98.3 KiB. This run: " +
        `oncely/locks ${phases('oncely-rest')}, the whole index ${phases('oncely-rest-index')}, ` +
        `@upstash/lock ${phases('upstash-lock')}: the import is shorter, but the first lock then loads ` +
        'some of the code the root had loaded already (the chunks the REST client shares with it), so the ' +
        'whole cold start gains a few ms, within the noise of 12 processes. Where the rest goes, phase by phase in fresh ' +
        'processes (5 runs): importing oncely/locks 10–14 ms, @upstash/redis 9–13 ms, the REST chunk 2–5 ' +
        "ms, node:http 2–3 ms, the client 1 ms, then the first request 9–13 ms (node:http's first use; " +
        "the second takes 2–3 ms). Before: where a fresh process spends its first lock (the layer's REST path " +
        'against the local gateway, 5 processes): 13–19 ms to import oncely, 22–31 ms for the first acquire, ' +
        'which loads the REST chunk, @upstash/redis and node:http and compiles them (the largest self time ' +
        "in the CPU profile is V8 compiling ES modules); the hand-written protocol's first acquire took 18 ms " +
        "in the same run. Minifying the layer's dependencies file by file: whitespace only cut the layer's " +
        'REST path from 3.01× to 2.28× its client and left this row where it was (0.729× vs 0.728×); full ' +
        'minification broke ioredis ("u is not a constructor"), so neither shipped; @upstash/redis alone ' +
        'minified in place (keepNames) imported no faster than as published (15 fresh processes each). ' +
        'The row passed (0.561×) ' +
        'when the layer was one minified bundle; the layer is now the package and its dependencies as ' +
        'published (issue 12), and the rest of the gap is loading @upstash/redis (181 KiB as published) ' +
        'and its module graph.'
      );
    }
    if (id.startsWith('rest.')) {
      return (
        `**${r.label}: ${v}.** Both contenders go through @upstash/redis to the same gateway, which ` +
        'shares the two cores with redis-server and the client; REST figures are the noisiest here (see the ' +
        'range). oncely is the cheaper client per pair (the REST bullet above: client and gateway CPU); the ' +
        'p50 is mostly the gateway and redis-server, which both contenders share. Nothing on this path ' +
        'changed in the last pass: the same rows measured back to back at the commit before it ' +
        '(0cd3528, quick REST-only runs) gave 0.645× p50 and 1.353× pairs/s, against 0.659× and 1.376× ' +
        "at this commit; the 0.554× p50 of an earlier full run was that run's machine, not a faster path."
      );
    }
    if (id.startsWith('scale.')) return scalingFailNote(d.scaling, r);
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
          ? " The layer's dependencies ship as published (not minified) while the contender bundles its " +
            `client minified: the layer's dependencies alone are ${fmtRatio(depsRatio, 2)} the contender's ` +
            `whole bundle here, which leaves oncely itself ${depsRatio >= (id === 'size.rest.layer' ? 2 : 1.1) ? 'no' : 'next to no'} room under the target. The layer index loads all of ` +
            'oncely (locks, Redlock, withOnce, SQS batches, leader, event keys, metrics) on either path.' +
            (id === 'size.rest.layer'
              ? ' Tried: fromEnv() builds its TCP stores from a chunk of their own and fromEnvAsync() loads ' +
                'its SSM reader by its first call, so the REST path no longer parses tcp-store, cluster ' +
                'recovery, the replica wait or the SSM code: 2.113× → 1.999× under the earlier measure (the ' +
                'layer minified as one bundle), the last before the layer shipped its dependencies as published.'
              : ' Nothing was cut on the TCP path itself: it needs the TCP transport the REST path now skips.')
          : ' Tried: the error classes a lock never uses (run-once, Redlock) are now dropped by the ' +
            'bundler (their base marked /* @__PURE__ */): 0.6 KiB less in each lock entry (TCP 240 004 → ' +
            '239 445 B, REST 127 183 → 126 556 B). The entry bundles only what a lock needs (tree-shaken): the Lock with using(), ' +
            'oncePerWindow(), status(), resume() and key sets, the Lease, the retry loop, the scripts of ' +
            'all of these, the error classes and the transport. Reaching the target needs about 12–14 KiB ' +
            "less of oncely's code, a third of it: only by taking features out of the Lock class (key sets, " +
            'windows) into functions of their own, which changes the API, so it was not done.';
      return (
        `**${r.label}: ${v}.** This run: ${parts}.${extra} Cold ` +
        'start (the bundle table) is what these bytes cost.'
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
