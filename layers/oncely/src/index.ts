/**
 * oncely: run-once AWS Lambda handlers on Redis locks. Public API only.
 *
 * The package's other entry points (package.json `exports`): `oncely/locks` (the lock API alone, for
 * functions that need nothing else: less to load at cold start), and, kept apart so that their optional peer
 * dependencies stay optional, `oncely/middy` (onceMiddleware, for @middy/core) and `oncely/ioredis`
 * (redisStore and clusterStore over your own ioredis options or client). fromEnv() reaches every transport
 * from here: it loads ioredis only when it creates a TCP store. withOnce, withOnceBatch and oncePerTick check
 * their options when called and load the run-once engine then (once/lazy.ts): importing `oncely` for its locks
 * never loads it.
 */

export type {
  AcquireOptions,
  Locker,
  RetryOptions,
  UsingOptions,
} from './acquire.js';
export type { Clock } from './clock.js';
export {
  ConfigError,
  InProgressError,
  LockLostError,
  type LockLostReason,
  LockNotAcquiredError,
  LockNotReleasedError,
  MissingKeyError,
  type NodeOutcome,
  type NotStorableReason,
  OncelyError,
  PayloadMismatchError,
  QuorumError,
  ReplicationError,
  ResultNotStorableError,
  StoreAuthError,
  StoreError,
  StoreUnavailableError,
  ValidationError,
} from './errors.js';
export type { EventSource, KeySpec, KeyValue, PayloadSpec } from './events.js';
export {
  type Election,
  type ElectOptions,
  elect,
  type LeaderInfo,
  type Leadership,
  observeLeader,
} from './leader.js';
export type { CheckOutcome, ExtendOutcome, Lease, ReleaseResult } from './lease.js';
export {
  createLock,
  type Lock,
  type LockOptions,
  type LockStatus,
  type WindowOptions,
  type WindowResult,
} from './lock.js';
export type { OnceBatchOptions, OnceRecordHandler } from './once/batch.js';
export type { Decision, DecisionKind, LoggerLike, LoggerOption, LogLevel } from './once/decisions.js';
export { oncePerTick, withOnce, withOnceBatch } from './once/lazy.js';
export type { LocalCacheOptions } from './once/local-cache.js';
export type { MetricsLike, MetricsOption } from './once/metrics.js';
export { isResultNotStored, type ResultNotStored } from './once/not-stored.js';
export type { DuplicatePolicy, OnceHandler, OnceOptions, OnceRun } from './once/options.js';
export type { TickOptions, TickRun } from './once/per-tick.js';
export { createRedlock, type Redlock, type RedlockOptions } from './redlock.js';
export type { Script } from './scripts.js';
export { rendezvous, type Shard, type ShardedStore, shardedStore } from './sharded.js';
export { fromEnv, fromEnvAsync, loadSecrets } from './transport/from-env.js';
export type { ReplicaOptions } from './transport/replicas.js';
export type { LoadSecretsOptions, ParameterReader } from './transport/ssm.js';
export type {
  CallResult,
  ScriptArg,
  ScriptCall,
  Store,
  StoreKind,
  TransportOptions,
} from './transport/types.js';
export { type UpstashStoreOptions, upstashClientStore, upstashStore } from './transport/upstash.js';
