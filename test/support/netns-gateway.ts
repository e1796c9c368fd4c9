/**
 * The REST gateway as its own process, for Network.startGateway() (test/support/netns.ts): run inside a
 * party's namespace so a test can cut it from its clients or from redis. The token comes from
 * $ONCELY_GATEWAY_TOKEN (never argv: it would show in `ps`). Prints `{"url": ...}` once listening; stops on
 * SIGTERM / SIGKILL.
 *
 *   node --import tsx test/support/netns-gateway.ts <listen host> <redis host> <redis port>
 */
import { startGateway } from '../../dev/gateway.js';

const [host, redisHost, redisPort] = process.argv.slice(2);
const token = process.env.ONCELY_GATEWAY_TOKEN ?? '';
if (!host || !redisHost || !redisPort || !token)
  throw new Error('usage: netns-gateway.ts <host> <redis host> <redis port>, token in $ONCELY_GATEWAY_TOKEN');
const gateway = await startGateway({ host, redis: { host: redisHost, port: Number(redisPort) }, token });
process.on('SIGTERM', () => void gateway.close().finally(() => process.exit(0)));
process.stdout.write(`${JSON.stringify({ url: gateway.url })}\n`);
