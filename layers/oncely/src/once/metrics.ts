/**
 * Run-once metrics, opt-in: counts of decisions and the store's latency, gathered over one invocation (or one
 * batch) and written at its end as one CloudWatch Embedded Metric Format document (a JSON log line CloudWatch
 * turns into metrics), or added to a Powertools `Metrics` instance the function already publishes.
 *
 * Dimensions are the run-once namespace and the function's name, nothing else: no key, digest or request id
 * (high cardinality would make a metric per event).
 */

import { AsyncLocalStorage } from 'node:async_hooks';
import type { Context } from 'aws-lambda';
import type { Script } from '../scripts.js';
import type { CallResult, ScriptArg, ScriptCall, Store } from '../transport/types.js';
import { type DecisionKind, type InvocationFields, invocationFields } from './decisions.js';
import { isMetricsLike, type MetricsOption } from './metrics-option.js';

export {
  isMetricsLike,
  type MetricsLike,
  type MetricsOption,
  metricsOption,
  metricsProblems,
} from './metrics-option.js';

/** The CloudWatch namespace of the EMF documents. */
export const METRICS_NAMESPACE = 'oncely';

/** Counted metrics, in document order. */
export const COUNTERS = [
  'Claims',
  'Completions',
  'DuplicatesReturned',
  'InProgressRejections',
  'PayloadMismatches',
  'LostLeases',
  'StoreErrors',
  'FailOpenRuns',
] as const;
export type Counter = (typeof COUNTERS)[number];

/** The latency of each store round trip, in milliseconds (up to MAX_VALUES values per document). */
export const LATENCY = 'StoreLatency';

/** EMF accepts at most 100 values for one metric in one document. */
const MAX_VALUES = 100;

/** Which counter a decision adds to (decisions not listed count nowhere). */
const COUNTER_OF: Partial<Record<DecisionKind, Counter>> = {
  claimed: 'Claims',
  completed: 'Completions',
  'duplicate-returned': 'DuplicatesReturned',
  'in-progress': 'InProgressRejections',
  skipped: 'InProgressRejections', // a duplicate turned away while the first ran, with duplicate: 'skip'
  mismatch: 'PayloadMismatches',
  lost: 'LostLeases',
  'store-error': 'StoreErrors',
  'complete-failed': 'StoreErrors',
  'give-back-failed': 'StoreErrors',
  'fail-open': 'FailOpenRuns',
};

/** One EMF document: the `_aws` metadata, the dimensions' values and the metrics' values at the top level. */
export interface EmfDocument {
  _aws: {
    Timestamp: number;
    CloudWatchMetrics: {
      Namespace: string;
      Dimensions: string[][];
      Metrics: { Name: string; Unit: 'Count' | 'Milliseconds' }[];
    }[];
  };
  [field: string]: unknown;
}

/** What one invocation (or batch) counted: decisions by counter, and store latencies. */
export class Tally {
  readonly counts = new Map<Counter, number>();
  latencies: number[] = [];
  #seen = 0;

  count(kind: DecisionKind): void {
    const c = COUNTER_OF[kind];
    if (c) this.counts.set(c, (this.counts.get(c) ?? 0) + 1);
  }

  /** One store round trip took `ms`. Past MAX_VALUES, a uniform sample of them is kept (reservoir). */
  latency(ms: number): void {
    const v = Math.round(ms * 100) / 100;
    this.#seen++;
    if (this.latencies.length < MAX_VALUES) this.latencies.push(v);
    else {
      const i = Math.floor(Math.random() * this.#seen);
      if (i < MAX_VALUES) this.latencies[i] = v;
    }
  }

  /** Adds another tally's counts and latencies (what was counted outside any invocation). */
  absorb(other: Tally): void {
    for (const [c, n] of other.counts) this.counts.set(c, (this.counts.get(c) ?? 0) + n);
    for (const v of other.latencies) this.latency(v);
    other.counts.clear();
    other.latencies = [];
    other.#seen = 0;
  }

  get empty(): boolean {
    return this.counts.size === 0 && this.latencies.length === 0;
  }
}

/**
 * Writes one invocation's tally as one document (or into the Metrics instance). Nothing is written for an
 * empty tally (ONCELY_DISABLED). Never throws: metrics must not break an invocation.
 */
export function publish(
  tally: Tally,
  output: Exclude<MetricsOption, false>,
  namespace: string,
  functionName: string | undefined,
  timestampMs: number,
): void {
  if (tally.empty) return;
  const counts = COUNTERS.map((name) => [name, tally.counts.get(name) ?? 0] as const);
  try {
    if (isMetricsLike(output)) {
      for (const [name, value] of counts) output.addMetric(name, 'Count', value);
      for (const v of tally.latencies) output.addMetric(LATENCY, 'Milliseconds', v);
      return;
    }
    const line = JSON.stringify(emfDocument(namespace, functionName, counts, tally.latencies, timestampMs));
    if (output === 'emf') console.log(line);
    else output(line);
  } catch {
    // metrics must not break an invocation
  }
}

/** Builds one EMF document (see https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html). */
export function emfDocument(
  namespace: string,
  functionName: string | undefined,
  counts: readonly (readonly [Counter, number])[],
  latencies: readonly number[],
  timestampMs: number,
): EmfDocument {
  const metrics: { Name: string; Unit: 'Count' | 'Milliseconds' }[] = counts.map(([Name]) => ({
    Name,
    Unit: 'Count',
  }));
  if (latencies.length > 0) metrics.push({ Name: LATENCY, Unit: 'Milliseconds' });
  const doc: EmfDocument = {
    _aws: {
      Timestamp: Math.floor(timestampMs),
      CloudWatchMetrics: [
        { Namespace: METRICS_NAMESPACE, Dimensions: [['Namespace', 'FunctionName']], Metrics: metrics },
      ],
    },
    Namespace: namespace,
    FunctionName: functionName ?? 'unknown',
  };
  for (const [name, value] of counts) doc[name] = value;
  if (latencies.length > 0) doc[LATENCY] = latencies.length === 1 ? latencies[0] : [...latencies];
  return doc;
}

/** `store` with each round trip's latency reported to `report` (failed calls too: they are store latency). */
export function timedStore(store: Store, now: () => number, report: (ms: number) => void): Store {
  const timed = async <T>(work: () => Promise<T>): Promise<T> => {
    const started = now();
    try {
      return await work();
    } finally {
      report(now() - started);
    }
  };
  return {
    kind: store.kind,
    name: store.name,
    run: (script: Script, keys: readonly string[], args: readonly ScriptArg[]) =>
      timed(() => store.run(script, keys, args)),
    runMany: (calls: readonly ScriptCall[]): Promise<CallResult[]> => timed(() => store.runMany(calls)),
    close: () => store.close(),
  };
}

/** One invocation (or batch) in progress: the Lambda fields its log lines carry, and what it counted. */
export interface Invocation {
  readonly fields: InvocationFields;
  /** Set when metrics are on. */
  readonly tally: Tally | undefined;
  closed: boolean;
}

/**
 * The invocations of one engine: which one a decision or a store call belongs to (concurrent invocations in one
 * process stay apart), and their metrics, written as one document per invocation when metrics are on.
 */
export class Invocations {
  readonly #current = new AsyncLocalStorage<Invocation>();
  /**
   * The one open invocation that runs outside #current: in Lambda a container runs one invocation at a time,
   * and on Node 20 the first AsyncLocalStorage.run() turns on promise hooks for the whole process (measured:
   * about a third of withOnce's client CPU per call). Only an invocation that opens while another is open runs
   * in #current; code outside it finds no store and so belongs to the solo one.
   */
  #solo: Invocation | undefined;
  /** What was counted outside any open invocation (a background give-back): goes into the next document. */
  readonly #stray = new Tally();
  constructor(
    readonly metrics: Exclude<MetricsOption, false> | undefined,
    readonly namespace: string,
    readonly wallClock: () => number,
  ) {}

  /**
   * An invocation (or a batch) opens: its request id, function name, cold start and trace id go on the decision
   * lines made within() it; its metrics are counted until close(). Adapters open one per Lambda invocation.
   */
  open(context: Partial<Context> | undefined): Invocation {
    return {
      fields: invocationFields(context),
      tally: this.metrics ? new Tally() : undefined,
      closed: false,
    };
  }

  /** Runs `fn` (and everything it starts) as part of `invocation`. */
  within<T>(invocation: Invocation, fn: () => T): T {
    if (this.#current.getStore() === undefined && (this.#solo === undefined || this.#solo === invocation)) {
      if (!invocation.closed) this.#solo = invocation;
      return fn();
    }
    return this.#current.run(invocation, fn);
  }

  /** The open invocation the running code belongs to. */
  #invocation(): Invocation | undefined {
    return this.#current.getStore() ?? this.#solo;
  }

  /** The invocation is over: its metrics (when on) are written as one document. Closing twice does nothing. */
  close(invocation: Invocation): void {
    if (invocation.closed) return;
    invocation.closed = true;
    if (this.#solo === invocation) this.#solo = undefined;
    const { tally } = invocation;
    if (!tally || !this.metrics) return;
    tally.absorb(this.#stray);
    publish(tally, this.metrics, this.namespace, invocation.fields.function_name, this.wallClock());
  }

  /** The open invocation's Lambda fields, if any. */
  fields(): InvocationFields | undefined {
    return this.#invocation()?.fields;
  }

  /** The tally a count goes to: the open invocation's, else the stray one. */
  tally(): Tally {
    const invocation = this.#invocation();
    return invocation?.tally && !invocation.closed ? invocation.tally : this.#stray;
  }
}
