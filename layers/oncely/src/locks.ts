/**
 * `oncely/locks`: the lock API alone (createLock, the Lease, the stores and their errors), for functions that
 * take locks and nothing else. Importing `oncely` also loads Redlock, leader election and withOnce's option
 * checks (the run-once engine itself loads when a handler is made); this entry loads about half of that
 * (41.5 of 70.9 KiB of oncely's code in the layer, in one file: scripts/build.ts lockPath), so it imports
 * sooner (the first lock then loads the store's code and client either way: docs/benchmarks.md, the bundle
 * table). Everything here is the same object as in `oncely` (one module graph, shared chunks), so
 * `instanceof` holds across the two. Redlock stays in `oncely`.
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
  LockLostError,
  type LockLostReason,
  LockNotAcquiredError,
  LockNotReleasedError,
  type NodeOutcome,
  OncelyError,
  ReplicationError,
  StoreAuthError,
  StoreError,
  StoreUnavailableError,
  ValidationError,
} from './errors.js';
export type { CheckOutcome, ExtendOutcome, Lease, ReleaseResult } from './lease.js';
export {
  createLock,
  type Lock,
  type LockOptions,
  type LockStatus,
  type WindowOptions,
  type WindowResult,
} from './lock.js';
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
