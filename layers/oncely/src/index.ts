/** oncely: run-once AWS Lambda handlers on Redis locks. Public API only. */

export { type Clock, monotonicClock } from './clock.js';
export {
  ConfigError,
  LockLostError,
  type LockLostReason,
  LockNotAcquiredError,
  type NodeOutcome,
  OncelyError,
  QuorumError,
  StoreAuthError,
  StoreError,
  StoreUnavailableError,
  ValidationError,
} from './errors.js';
export {
  canonicalJson,
  detectSource,
  EVENT_SOURCES,
  type EventSource,
  header,
  httpBody,
  type Identity,
  identify,
  isHttpEvent,
  type KeySpec,
  type KeyValue,
  type PayloadSpec,
  sourceKey,
  sourcePayload,
} from './events.js';
export {
  Election,
  type ElectOptions,
  elect,
  type LeaderInfo,
  type Leadership,
  observeLeader,
} from './leader.js';
export {
  type AcquireOptions,
  createLock,
  type ExtendOutcome,
  Lease,
  Lock,
  type Locker,
  type LockOptions,
  MAX_KEY_BYTES,
  MAX_TTL_MS,
  MIN_TTL_MS,
  type ReleaseResult,
  type RetryOptions,
  type UsingOptions,
} from './lock.js';
export { type OnceContext, onceMiddleware } from './middy.js';
export {
  type Begin,
  type Decision,
  type DecisionKind,
  type DuplicatePolicy,
  FENCE_GRACE_MS,
  httpResponseFor,
  InProgressError,
  isResultNotStored,
  type LeaderOptions,
  type LeaderRun,
  type LogLevel,
  MissingKeyError,
  type NotStorableReason,
  type OnceBatchOptions,
  OnceEngine,
  type OnceHandler,
  type OnceOptions,
  type OnceRecordHandler,
  type OnceRun,
  PayloadMismatchError,
  ResultNotStorableError,
  type ResultNotStored,
  Run,
  withLeader,
  withOnce,
  withOnceBatch,
} from './once.js';
export {
  createRedlock,
  defaultNodeTimeoutMs,
  Redlock,
  type RedlockOptions,
} from './redlock.js';
export { LOCK_SCRIPTS, ONCE_SCRIPTS, type Script } from './scripts.js';
export { hashTag, rendezvous, type Shard, type ShardedStore, shardedStore } from './sharded.js';
export { configFromEnv, fromEnv, type StoreConfig, storeFromConfig } from './transport/from-env.js';
export {
  type ClusterStoreOptions,
  clusterStore,
  type RedisStoreOptions,
  redisStore,
  type TcpAuthOptions,
} from './transport/ioredis.js';
export type {
  CallResult,
  ScriptArg,
  ScriptCall,
  Store,
  StoreKind,
  TransportOptions,
} from './transport/types.js';
export { type UpstashStoreOptions, upstashStore } from './transport/upstash.js';
export { upstashClientStore } from './transport/upstash-client.js';
