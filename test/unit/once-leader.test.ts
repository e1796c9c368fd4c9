import type { ScheduledEvent } from 'aws-lambda';
import { describe, expect, it, vi } from 'vitest';
import {
  MissingKeyError,
  oncePerTick,
  type TickOptions,
  type TickRun,
  ValidationError,
} from '../../layers/oncely/src/index.js';
import { digest } from '../../layers/oncely/src/once/record.js';
import { deferred, lambdaContext, logSink, scheduledTick } from '../support/once.js';
import { OnceFakeStore } from '../support/once-fake-store.js';

const T0 = Date.parse('2030-01-01T12:00:00Z');

const tick = (at: number, rule = 'nightly-report', region = 'us-east-1') => scheduledTick(at, rule, region);

function setup(extra: Partial<TickOptions> = {}, now = T0 + 5_000) {
  const store = new OnceFakeStore(() => Date.now());
  const log = logSink();
  const wall = { now };
  const options: TickOptions = {
    store,
    clock: { now: () => Date.now() },
    wallClock: () => wall.now,
    logger: log.logger,
    ...extra,
  };
  return { store, log, options, wall };
}

describe('oncePerTick', () => {
  it('runs once per tick across replicas and regions; the next tick runs again with a higher fence', async () => {
    const { options, store, wall } = setup();
    const runs: TickRun[] = [];
    const job = async (_e: ScheduledEvent, _c: unknown, run: TickRun) => {
      runs.push(run);
      return { rows: 42 };
    };
    const replicaA = oncePerTick(job, options);
    const replicaB = oncePerTick(job, options);
    expect(await replicaA(tick(T0), lambdaContext())).toEqual({ rows: 42 });
    expect(await replicaB(tick(T0, 'nightly-report', 'eu-west-1'), lambdaContext())).toEqual({ rows: 42 });
    expect(runs).toHaveLength(1);
    expect(runs[0]!.tick).toBe('2030-01-01T12:00:00.000Z');
    expect(runs[0]!.key).toBe('nightly-report@2030-01-01T12:00:00.000Z');
    expect(store.calls[0]!.keys[0]).toMatch(/^oncely:once:\{leader:/);
    wall.now = T0 + 60_004; // the next tick, taken 4 ms after it was due
    await replicaB(tick(T0 + 60_000), lambdaContext());
    expect(runs).toHaveLength(2);
    // Each tick is its own record; fences follow the wall clock across ticks (the fence floor is "now").
    expect(runs[1]!.fence).toBeGreaterThan(runs[0]!.fence);
  });

  it('a replica that finds the tick in progress elsewhere skips it quietly (undefined, no throw)', async () => {
    const { options, log } = setup();
    const gate = deferred<string>();
    let runs = 0;
    const job = oncePerTick(async () => {
      runs++;
      return gate.promise;
    }, options);
    const first = job(tick(T0), lambdaContext());
    await vi.waitFor(() => expect(runs).toBe(1));
    expect(await job(tick(T0), lambdaContext())).toBeUndefined();
    gate.resolve('done');
    expect(await first).toBe('done');
    expect(log.decisions()).toEqual(['claimed', 'skipped', 'completed']);
  });

  it('a stale tick is skipped and logged before touching the store', async () => {
    const { options, store, log } = setup({ maxLagMs: 60_000 }, T0 + 61_000);
    let runs = 0;
    const job = oncePerTick(async () => ++runs, options);
    expect(await job(tick(T0), lambdaContext())).toBeUndefined();
    expect(runs).toBe(0);
    expect(store.roundTrips).toBe(0);
    expect(log.parsed()).toMatchObject([
      { level: 'WARN', decision: 'stale-tick', keyDigest: digest('nightly-report@2030-01-01T12:00:00.000Z') },
    ]);
    expect((log.parsed()[0]!.reason as string).includes('61000 ms old')).toBe(true);
    // Just inside the lag it runs.
    const fresh = setup({ maxLagMs: 60_000 }, T0 + 60_000);
    expect(await oncePerTick(async () => 'ran', fresh.options)(tick(T0), lambdaContext())).toBe('ran');
  });

  it('stages with different rule names share a tick when given the same name', async () => {
    const { options } = setup({ name: 'report' });
    let runs = 0;
    const job = oncePerTick(async () => ++runs, options);
    await job(tick(T0, 'svc-dev-report'), lambdaContext());
    await job(tick(T0, 'svc-prod-report'), lambdaContext());
    expect(runs).toBe(1);
    const byRule = setup();
    const perRule = oncePerTick(async () => ++runs, byRule.options);
    await perRule(tick(T0, 'svc-dev-report'), lambdaContext());
    await perRule(tick(T0, 'svc-prod-report'), lambdaContext());
    expect(runs).toBe(3);
  });

  it('a failed run releases the tick, so a retry of the same tick runs', async () => {
    const { options } = setup();
    let runs = 0;
    const job = oncePerTick(async () => {
      if (++runs === 1) throw new Error('db down');
      return 'ok';
    }, options);
    await expect(job(tick(T0), lambdaContext())).rejects.toThrow('db down');
    expect(await job(tick(T0), lambdaContext())).toBe('ok');
    expect(runs).toBe(2);
  });

  it('keeps a tick record for maxLagMs plus a minute: as long as any replica could still take it as fresh', async () => {
    const { options, store } = setup({ maxLagMs: 120_000 });
    await oncePerTick(async () => 1, options)(tick(T0), lambdaContext());
    const complete = store.calls.find((c) => c.script === 'once-complete')!;
    expect(complete.args[3]).toBe(180_000);
  });

  it('a custom tick function (EventBridge Scheduler input); an event without a time is a MissingKeyError', async () => {
    const { options } = setup({ name: 'job', tick: (e) => Number((e.detail as { at: number }).at) });
    let seen = '';
    const job = oncePerTick(async (_e, _c, run) => {
      seen = run.tick;
    }, options);
    await job({ ...tick(0), detail: { at: T0 } }, lambdaContext());
    expect(seen).toBe('2030-01-01T12:00:00.000Z');
    const plain = setup();
    await expect(
      oncePerTick(async () => 1, plain.options)({ ...tick(T0), time: 'soon' }, lambdaContext()),
    ).rejects.toBeInstanceOf(MissingKeyError);
  });

  it('bad options are rejected at once', () => {
    const { options } = setup();
    expect(() => oncePerTick(async () => 1, { ...options, maxLagMs: -1, name: '' })).toThrow(ValidationError);
  });
});
