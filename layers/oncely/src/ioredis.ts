/**
 * `oncely/ioredis`: Redis over TCP through ioredis (an optional peer dependency), standalone or Cluster, from
 * options or from a client you already own. Its own entry point so that the root's types never name ioredis;
 * ioredis itself is loaded when a store is created from options, so importing this costs nothing until then.
 */
export {
  type ClusterStoreOptions,
  clusterStore,
  type RedisStoreOptions,
  redisStore,
  type TcpAuthOptions,
} from './transport/tcp.js';
