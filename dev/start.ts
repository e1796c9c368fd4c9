/**
 * `npm start`: the local stack on embedded defaults — a redis-server on a free port and the Upstash-compatible
 * REST gateway in front of it — then prints the environment to use and waits. Ctrl-C (or SIGTERM) stops all.
 *
 *   ONCELY_GATEWAY_PORT  gateway port (default 8079, or a free one when taken)
 *   ONCELY_LOCAL_TOKEN   the gateway's bearer token (default `oncely-local-token`)
 */
import { createServer } from 'node:net';
import { startGateway } from './gateway.js';
import { startRedis } from './redis-server.js';

export const LOCAL_TOKEN = 'oncely-local-token';
const DEFAULT_GATEWAY_PORT = 8079;

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

async function main(): Promise<void> {
  const token = process.env.ONCELY_LOCAL_TOKEN || LOCAL_TOKEN;
  const wanted = Number(process.env.ONCELY_GATEWAY_PORT || DEFAULT_GATEWAY_PORT);
  const redis = await startRedis();
  const gateway = await startGateway({
    redis: { host: redis.host, port: redis.port },
    token,
    port: (await portIsFree(wanted)) ? wanted : 0,
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping the gateway and redis-server (pid ${redis.pid})`);
    await gateway.close().catch(() => undefined);
    await redis.stop().catch(() => undefined);
    console.log('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  console.log(`oncely local stack
  redis-server  ${redis.url}  (pid ${redis.pid})
  REST gateway  ${gateway.url}  (Upstash-compatible)

Use it from another shell (REST, as in Lambda with Upstash):
export UPSTASH_REDIS_REST_URL=${gateway.url}
export UPSTASH_REDIS_REST_TOKEN=${token}

or over TCP:
export ONCELY_REDIS_URL=${redis.url}

ready. Ctrl-C stops everything.`);
}

main().catch((err) => {
  console.error('npm start failed:', err instanceof Error ? err.message : err);
  process.exit(1);
});
