/**
 * The public API is exactly what the package's entry points export (index.ts for `oncely`, locks.ts for
 * `oncely/locks`, middy.ts for `oncely/middy`, ioredis.ts for `oncely/ioredis`): a change to it must change
 * these lists too, on purpose.
 * Values are read from each module itself; types (which leave no trace at run time) from its re-exports,
 * which is re-exports only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as api from '../../layers/oncely/src/index.js';
import * as ioredisApi from '../../layers/oncely/src/ioredis.js';
import * as locksApi from '../../layers/oncely/src/locks.js';
import * as middyApi from '../../layers/oncely/src/middy.js';

/**
 * `oncely`: what the README and docs/ document, nothing else. One way to make each kind of object
 * (createLock, createRedlock, elect: their classes are exported as types only) and no deprecated aliases.
 */
const VALUES = [
  'ConfigError',
  'InProgressError',
  'LockLostError',
  'LockNotAcquiredError',
  'LockNotReleasedError',
  'MissingKeyError',
  'OncelyError',
  'PayloadMismatchError',
  'QuorumError',
  'ReplicationError',
  'ResultNotStorableError',
  'StoreAuthError',
  'StoreError',
  'StoreUnavailableError',
  'ValidationError',
  'createLock',
  'createRedlock',
  'elect',
  'fromEnv',
  'fromEnvAsync',
  'isResultNotStored',
  'loadSecrets',
  'observeLeader',
  'oncePerTick',
  'rendezvous',
  'shardedStore',
  'upstashClientStore',
  'upstashStore',
  'withOnce',
  'withOnceBatch',
];

const TYPES = [
  'AcquireOptions',
  'CallResult',
  'CheckOutcome',
  'Clock',
  'Decision',
  'DecisionKind',
  'DuplicatePolicy',
  'ElectOptions',
  'Election',
  'EventSource',
  'ExtendOutcome',
  'KeySpec',
  'KeyValue',
  'LeaderInfo',
  'Leadership',
  'Lease',
  'LoadSecretsOptions',
  'LocalCacheOptions',
  'Lock',
  'LockLostReason',
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
  'ParameterReader',
  'PayloadSpec',
  'Redlock',
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
  'StoreKind',
  'TickOptions',
  'TickRun',
  'TransportOptions',
  'UpstashStoreOptions',
  'UsingOptions',
  'WindowOptions',
  'WindowResult',
];

/** `oncely/locks`: the root's lock API and stores, nothing of run-once, Redlock or leader election. */
const LOCK_VALUES = [
  'ConfigError',
  'LockLostError',
  'LockNotAcquiredError',
  'LockNotReleasedError',
  'OncelyError',
  'ReplicationError',
  'StoreAuthError',
  'StoreError',
  'StoreUnavailableError',
  'ValidationError',
  'createLock',
  'fromEnv',
  'fromEnvAsync',
  'loadSecrets',
  'rendezvous',
  'shardedStore',
  'upstashClientStore',
  'upstashStore',
];
const LOCK_TYPES = [
  'AcquireOptions',
  'CallResult',
  'CheckOutcome',
  'Clock',
  'ExtendOutcome',
  'Lease',
  'LoadSecretsOptions',
  'Lock',
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

  it('one way to make each kind: the factories are values, the classes types only; no former names', () => {
    for (const made of ['Lock', 'Redlock', 'Election', 'Lease']) {
      expect(VALUES).not.toContain(made);
      expect(TYPES).toContain(made);
    }
    for (const former of ['withLeader', 'LeaderOptions', 'LeaderRun'])
      expect(reExports().map((e) => e.name)).not.toContain(former);
    expect(source).not.toContain('@deprecated');
  });

  it('every value of the root is documented in the README or docs/', () => {
    const docs = [
      readFileSync(new URL('../../README.md', import.meta.url), 'utf8'),
      ...readdirSync(new URL('../../docs/', import.meta.url))
        .filter((f) => f.endsWith('.md'))
        .map((f) => readFileSync(new URL(`../../docs/${f}`, import.meta.url), 'utf8')),
    ].join('\n');
    const undocumented = VALUES.filter((name) => !new RegExp(`\\b${name}\\b`).test(docs));
    expect(undocumented).toEqual([]);
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
