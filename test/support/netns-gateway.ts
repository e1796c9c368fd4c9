/**
 * The REST gateway as its own process, for Network.startGateway() (test/support/netns.ts): run inside a
 * party's namespace so a test can cut it from its clients or from redis. The token comes from
 * $ONCELY_GATEWAY_TOKEN (never argv: it would show in `ps`). Prints `{"url": ...}` once listening; stops on
 * SIGTERM / SIGKILL. TLS: $ONCELY_GATEWAY_REDIS_CA (a CA file: reach redis over TLS), $ONCELY_GATEWAY_CERT
 * and $ONCELY_GATEWAY_KEY (files: serve https).
 *
 *   node --import tsx test/support/netns-gateway.ts <listen host> <redis host> <redis port>
 */
import { readFileSync } from 'node:fs';
import { startGateway } from '../../dev/gateway.js';

const [host, redisHost, redisPort] = process.argv.slice(2);
const token = process.env.ONCELY_GATEWAY_TOKEN ?? '';
if (!host || !redisHost || !redisPort || !token)
  throw new Error('usage: netns-gateway.ts <host> <redis host> <redis port>, token in $ONCELY_GATEWAY_TOKEN');
// TLS, by file paths: to redis (trusting $ONCELY_GATEWAY_REDIS_CA), and to clients (https).
const env = process.env;
const redisTls = env.ONCELY_GATEWAY_REDIS_CA ? { ca: readFileSync(env.ONCELY_GATEWAY_REDIS_CA) } : undefined;
const tls =
  env.ONCELY_GATEWAY_CERT && env.ONCELY_GATEWAY_KEY
    ? { cert: readFileSync(env.ONCELY_GATEWAY_CERT), key: readFileSync(env.ONCELY_GATEWAY_KEY) }
    : undefined;
const redis = { host: redisHost, port: Number(redisPort), ...(redisTls ? { tls: redisTls } : {}) };
const gateway = await startGateway({ host, redis, token, ...(tls ? { tls } : {}) });
process.on('SIGTERM', () => void gateway.close().finally(() => process.exit(0)));
process.stdout.write(`${JSON.stringify({ url: gateway.url })}\n`);
