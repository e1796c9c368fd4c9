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
export {
  createRedlock,
  defaultNodeTimeoutMs,
  Redlock,
  type RedlockOptions,
} from './redlock.js';
export { LOCK_SCRIPTS, type Script } from './scripts.js';
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
