/**
 * The public API is exactly what the package's entry points export (index.ts for `oncely`, locks.ts for
 * `oncely/locks`, middy.ts for `oncely/middy`, ioredis.ts for `oncely/ioredis`): a change to it must change
 * these lists too, on purpose.
 * Values are read from each module itself; types (which leave no trace at run time) from its re-exports,
 * which is re-exports only.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as api from '../../layers/oncely/src/index.js';
import * as ioredisApi from '../../layers/oncely/src/ioredis.js';
import * as locksApi from '../../layers/oncely/src/locks.js';
import * as middyApi from '../../layers/oncely/src/middy.js';

const VALUES = [
  'SSM_SUFFIX',
  'fromEnvAsync',
  'loadSecrets',
  'ConfigError',
  'EVENT_SOURCES',
  'Election',
  'InProgressError',
  'LOCK_SCRIPTS',
  'Lease',
  'Lock',
  'LockLostError',
  'LockNotAcquiredError',
  'LockNotReleasedError',
  'MAX_KEY_BYTES',
  'MAX_TTL_MS',
  'MIN_TTL_MS',
  'MissingKeyError',
  'ONCE_SCRIPTS',
  'OncelyError',
  'PayloadMismatchError',
  'QuorumError',
  'Redlock',
  'ReplicationError',
  'ResultNotStorableError',
  'StoreAuthError',
  'StoreError',
  'StoreUnavailableError',
  'ValidationError',
  'canonicalJson',
  'configFromEnv',
  'createLock',
  'createRedlock',
  'defaultNodeTimeoutMs',
  'detectSource',
  'elect',
  'fromEnv',
  'hashTag',
  'header',
  'httpBody',
  'httpResponseFor',
  'identify',
  'isHttpEvent',
  'isResultNotStored',
  'monotonicClock',
  'observeLeader',
  'rendezvous',
  'shardedStore',
  'sourceKey',
  'sourcePayload',
  'storeFromConfig',
  'upstashClientStore',
  'upstashStore',
  'oncePerTick',
  'withLeader',
  'withOnce',
  'withOnceBatch',
];

const TYPES = [
  'LoadSecretsOptions',
  'ParameterReader',
  'AcquireOptions',
  'CallResult',
  'CheckOutcome',
  'Clock',
  'Decision',
  'DecisionKind',
  'DuplicatePolicy',
  'ElectOptions',
  'EventSource',
  'ExtendOutcome',
  'Identity',
  'KeySpec',
  'KeyValue',
  'LeaderInfo',
  'LeaderOptions',
  'LeaderRun',
  'TickOptions',
  'TickRun',
  'Leadership',
  'LockLostReason',
  'LocalCacheOptions',
  'LockOptions',
  'LockStatus',
  'Locker',
  'LogLevel',
  'LoggerLike',
  'LoggerOption',
  'MetricsLike',
  'MetricsOption',
  'NodeOutcome',
  'NotStorableReason',
  'OnceBatchOptions',
  'OnceHandler',
  'OnceOptions',
  'OnceRecordHandler',
  'OnceRun',
  'PayloadSpec',
  'RedlockOptions',
  'ReleaseResult',
  'ReplicaOptions',
  'ResultNotStored',
  'RetryOptions',
  'Script',
  'ScriptArg',
  'ScriptCall',
  'Shard',
  'ShardedStore',
  'Store',
  'StoreConfig',
  'StoreKind',
  'TransportOptions',
  'UpstashStoreOptions',
  'UsingOptions',
  'WindowOptions',
  'WindowResult',
];

/** `oncely/locks`: the root's lock API and stores, nothing of run-once, Redlock or leader election. */
const LOCK_VALUES = [
  'ConfigError',
  'LOCK_SCRIPTS',
  'Lease',
  'Lock',
  'LockLostError',
  'LockNotAcquiredError',
  'LockNotReleasedError',
  'MAX_KEY_BYTES',
  'MAX_TTL_MS',
  'MIN_TTL_MS',
  'OncelyError',
  'ReplicationError',
  'SSM_SUFFIX',
  'StoreAuthError',
  'StoreError',
  'StoreUnavailableError',
  'ValidationError',
  'configFromEnv',
  'createLock',
  'fromEnv',
  'fromEnvAsync',
  'hashTag',
  'loadSecrets',
  'monotonicClock',
  'rendezvous',
  'shardedStore',
  'storeFromConfig',
  'upstashClientStore',
  'upstashStore',
];
const LOCK_TYPES = [
  'AcquireOptions',
  'CallResult',
  'CheckOutcome',
  'Clock',
  'ExtendOutcome',
  'LoadSecretsOptions',
  'LockLostReason',
  'LockOptions',
  'LockStatus',
  'Locker',
  'NodeOutcome',
  'ParameterReader',
  'ReleaseResult',
  'ReplicaOptions',
  'RetryOptions',
  'Script',
  'ScriptArg',
  'ScriptCall',
  'Shard',
  'ShardedStore',
  'Store',
  'StoreConfig',
  'StoreKind',
  'TransportOptions',
  'UpstashStoreOptions',
  'UsingOptions',
  'WindowOptions',
  'WindowResult',
];

/** The other entry points: their optional peers' names stay out of the root. */
const SUBPATHS = [
  { entry: 'middy', module: middyApi, values: ['onceMiddleware', 'onceOf'], types: ['OnceContext'] },
  {
    entry: 'ioredis',
    module: ioredisApi,
    values: ['clusterStore', 'redisStore'],
    types: ['ClusterStoreOptions', 'RedisStoreOptions', 'TcpAuthOptions'],
  },
];

const sourceOf = (entry: string) =>
  readFileSync(new URL(`../../layers/oncely/src/${entry}.ts`, import.meta.url), 'utf8');
const source = sourceOf('index');

/** Every name an entry point re-exports, and whether it is type-only. */
function reExports(code = source): { name: string; typeOnly: boolean }[] {
  const out: { name: string; typeOnly: boolean }[] = [];
  for (const m of code.matchAll(/export (type )?\{([^}]*)\} from '[^']+';/g)) {
    for (const part of (m[2] ?? '').split(',')) {
      const spec = part.trim();
      if (!spec) continue;
      const typeOnly = Boolean(m[1]) || spec.startsWith('type ');
      out.push({ name: spec.replace(/^type /, ''), typeOnly });
    }
  }
  return out;
}

/** The code of an entry point without its comments and re-exports: empty when it is re-exports only. */
const definitions = (code: string) =>
  code
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/export (type )?\{[^}]*\} from '[^']+';/g, '')
    .trim();

describe('the public API', () => {
  it('exports exactly these values', () => {
    expect(Object.keys(api).sort()).toEqual([...VALUES].sort());
  });

  it('exports exactly these types', () => {
    const types = reExports()
      .filter((e) => e.typeOnly)
      .map((e) => e.name);
    expect(types.sort()).toEqual([...TYPES].sort());
  });

  it('index.ts holds re-exports only (no definitions, no export *)', () => {
    expect(definitions(source)).toBe('');
    expect(
      reExports()
        .filter((e) => !e.typeOnly)
        .map((e) => e.name)
        .sort(),
    ).toEqual([...VALUES].sort());
  });

  it.each(SUBPATHS)('oncely/$entry exports exactly its values and types, as re-exports only', (sub) => {
    const code = sourceOf(sub.entry);
    expect(Object.keys(sub.module).sort()).toEqual([...sub.values].sort());
    expect(definitions(code)).toBe('');
    const names = reExports(code);
    expect(
      names
        .filter((e) => e.typeOnly)
        .map((e) => e.name)
        .sort(),
    ).toEqual([...sub.types].sort());
    // Nothing of the root's, and nothing of theirs in the root.
    for (const name of [...sub.values, ...sub.types]) {
      expect(VALUES).not.toContain(name);
      expect(TYPES).not.toContain(name);
    }
  });

  it("oncely/locks exports exactly its values and types, as re-exports only, each the same as the root's", () => {
    const code = sourceOf('locks');
    expect(definitions(code)).toBe('');
    expect(Object.keys(locksApi).sort()).toEqual([...LOCK_VALUES].sort());
    const types = reExports(code)
      .filter((e) => e.typeOnly)
      .map((e) => e.name);
    expect(types.sort()).toEqual([...LOCK_TYPES].sort());
    // A subset of the root, the same objects (instanceof holds across the two entry points).
    for (const name of LOCK_VALUES) {
      expect(VALUES).toContain(name);
      expect((locksApi as Record<string, unknown>)[name]).toBe((api as Record<string, unknown>)[name]);
    }
    for (const name of LOCK_TYPES) expect(TYPES).toContain(name);
  });

  it('no engine internals leak', () => {
    for (const internal of [
      'OnceEngine',
      'Run',
      'Begin',
      'ClaimReply',
      'decodeResult',
      'isDisabled',
      'DEFAULT_RETRY',
      'FENCE_GRACE_MS',
      'NodeAnswer',
      'outcomeOf',
    ])
      expect(reExports().map((e) => e.name)).not.toContain(internal);
  });
});
