/**
 * The public API is exactly what index.ts exports: a change to it must change this list too, on purpose.
 * Values are read from the module itself; types (which leave no trace at run time) from index.ts's re-exports,
 * which is re-exports only.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as api from '../../layers/oncely/src/index.js';

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
  'clusterStore',
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
  'onceMiddleware',
  'redisStore',
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
  'ClusterStoreOptions',
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
  'LockOptions',
  'LockStatus',
  'Locker',
  'LogLevel',
  'NodeOutcome',
  'NotStorableReason',
  'OnceBatchOptions',
  'OnceContext',
  'OnceHandler',
  'OnceOptions',
  'OnceRecordHandler',
  'OnceRun',
  'PayloadSpec',
  'RedisStoreOptions',
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
  'TcpAuthOptions',
  'TransportOptions',
  'UpstashStoreOptions',
  'UsingOptions',
  'WindowOptions',
  'WindowResult',
];

const source = readFileSync(new URL('../../layers/oncely/src/index.ts', import.meta.url), 'utf8');

/** Every name index.ts re-exports, and whether it is type-only. */
function reExports(): { name: string; typeOnly: boolean }[] {
  const out: { name: string; typeOnly: boolean }[] = [];
  for (const m of source.matchAll(/export (type )?\{([^}]*)\} from '[^']+';/g)) {
    for (const part of (m[2] ?? '').split(',')) {
      const spec = part.trim();
      if (!spec) continue;
      const typeOnly = Boolean(m[1]) || spec.startsWith('type ');
      out.push({ name: spec.replace(/^type /, ''), typeOnly });
    }
  }
  return out;
}

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
    const code = source
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/export (type )?\{[^}]*\} from '[^']+';/g, '')
      .trim();
    expect(code).toBe('');
    expect(
      reExports()
        .filter((e) => !e.typeOnly)
        .map((e) => e.name)
        .sort(),
    ).toEqual([...VALUES].sort());
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
