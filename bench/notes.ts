/**
 * The "Notes" section of docs/benchmarks.md: what each FAIL comes from, with the run's own figures (CPU per
 * operation on each side, commands per operation, bytes per package). Only facts the run measured.
 */

import type { SequentialResult } from './harness.js';
import { type BenchData, isSkipped } from './report.js';
import { type Evaluated, fmtBytes, fmtMs, fmtRatio, median, ratioOfRounds } from './stats.js';

const find = <T extends { id: string }>(xs: readonly T[] | undefined, id: string) =>
  xs?.find((x) => x.id === id);
const med = (xs: number[]) => median(xs.filter(Number.isFinite));
const client = (r?: SequentialResult) => med(r?.rounds.map((x) => x.cpuUs) ?? []);
const server = (r: SequentialResult | undefined, name: string) =>
  med(r?.rounds.map((x) => x.serverUs[name] ?? Number.NaN) ?? []);
const us = (x: number) => (Number.isFinite(x) ? `${Math.round(x)} µs` : 'n/a');

export function notes(d: BenchData, results: readonly Evaluated[]): string {
  const verdict = (id: string) => results.find((r) => r.id === id)?.verdict;
  const out: string[] = [];
  const tcp = isSkipped(d.tcp) ? undefined : d.tcp;
  if (tcp) {
    const o = find(tcp.sequential, 'oncely');
    const raw = find(tcp.sequential, 'raw');
    const own = find(tcp.sequential, 'oncely-own');
    const fenced = find(tcp.sequential, 'raw-fenced');
    const r = (a?: SequentialResult, b?: SequentialResult) =>
      fmtRatio(ratioOfRounds(a?.rounds.map((x) => x.p50) ?? [], b?.rounds.map((x) => x.p50) ?? []));
    out.push(
      `- **TCP vs raw ioredis** (${verdict('tcp.p50')} p50, ${verdict('tcp.rate')} pairs/s). A pair costs oncely ` +
        `${us(client(o))} of client CPU and ${us(server(o, 'redis'))} of redis-server CPU, the raw baseline ` +
        `${us(client(raw))} and ${us(server(raw, 'redis'))}, at a pair p50 of ${fmtMs(o?.summary.p50 ?? Number.NaN)} vs ` +
        `${fmtMs(raw?.summary.p50 ?? Number.NaN)} ms. oncely's acquire is one script (GET, INCR of the fencing ` +
        `counter, SET PX: see the commands table) where the baseline sends SET NX PX and has no fencing token; its ` +
        `client side adds a random token check, a Lease (its expiry timer and AbortSignal) and a per-call timeout. ` +
        `On loopback a pair is tens of microseconds, so those microseconds are a visible share; on a network ` +
        `round trip of 0.2–1 ms they are not. With oncely's own client (as fromEnv builds it, with ioredis ` +
        `commandTimeout) a pair costs ${us(client(own))} of client CPU. The split, from the same rounds: oncely's ` +
        `scripts sent from bare ioredis (no library) run at ${r(fenced, raw)} the raw baseline's p50 — the price ` +
        `of the fenced acquire on the server — and the library on top of them at ${r(o, fenced)}.`,
    );
  }
  const rest = isSkipped(d.rest) ? undefined : d.rest;
  if (rest) {
    const o = find(rest.sequential, 'oncely');
    const u = find(rest.sequential, 'upstash-lock');
    out.push(
      `- **REST vs @upstash/lock** (${verdict('rest.p50')} p50, ${verdict('rest.rate')} pairs/s). Both make two ` +
        `requests per pair. Client CPU per pair: oncely ${us(client(o))} (node:http keep-alive agent), @upstash/lock ` +
        `${us(client(u))} (fetch); gateway CPU per pair ${us(server(o, 'gateway'))} vs ${us(server(u, 'gateway'))}. ` +
        'Under 50 workers both batch: @upstash/redis auto-pipelines, oncely sends the calls of one tick as one ' +
        '/pipeline request; the gateway and redis-server share the two cores with the client, so pairs/s is bounded ' +
        'by the CPU of all three.',
    );
  }
  if (!isSkipped(d.once)) {
    const first = d.once.first;
    const o = find(first, 'oncely');
    const p = find(first, 'powertools');
    out.push(
      `- **withOnce vs Powertools** (${verdict('once.first')} first call, ${verdict('once.duplicate')} duplicate). ` +
        `First call: oncely ${us(client(o))} client CPU and ${us(server(o, 'redis'))} redis CPU, Powertools ` +
        `${us(client(p))} and ${us(server(p, 'redis'))}. Both make two round trips; oncely's are scripts (claim: ` +
        'compare-and-set of the owner token, fence, lease; complete: compare-and-set, result, retention) where ' +
        'Powertools sends two plain SETs without an owner check (its completion overwrites unconditionally). ' +
        'A duplicate is one script for oncely, SET NX then GET for Powertools.',
    );
  }
  if (!isSkipped(d.bundles)) {
    const layerRest = find(d.bundles, 'oncely-rest');
    const layerTcp = find(d.bundles, 'oncely-tcp');
    const parts = (b?: { byPackage: Record<string, number> }) =>
      Object.entries(b?.byPackage ?? {})
        .sort((x, y) => y[1] - x[1])
        .filter(([, n]) => n >= 1024)
        .map(([k, n]) => `${k} ${fmtBytes(n)}`)
        .join(', ');
    out.push(
      `- **Bytes** (${verdict('size.rest.layer')} layer REST, ${verdict('size.rest.entry')} REST entry, ` +
        `${verdict('size.tcp.entry')} TCP entry, ${verdict('size.tcp.layer')} layer TCP). The layer's index loads ` +
        `all of oncely (locks, Redlock, withOnce, SQS batches, leader, event keys) and JMESPath: REST path ` +
        `${parts(layerRest)}; TCP path ${parts(layerTcp)}. The REST transport speaks the REST protocol itself ` +
        '(node:http), so no @upstash/redis is loaded at all; the TCP path carries ioredis whole.',
    );
  }
  return out.join('\n');
}
