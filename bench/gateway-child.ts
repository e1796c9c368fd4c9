/**
 * The REST gateway in its own process, so its CPU is not charged to the client being measured (a real Upstash
 * endpoint is on another machine). Started by bench/servers.ts with an IPC channel:
 *   argv: <redis host> <redis port> <token>
 *   sends { url } once listening; answers { type: 'count' } with { requests, connections };
 *   exits on disconnect.
 */
import { startGateway } from '../dev/gateway.js';

const [host = '127.0.0.1', port = '6379', token = ''] = process.argv.slice(2);
const gateway = await startGateway({ redis: { host, port: Number(port) }, token });

process.on('message', (message: { type?: string; id?: number }) => {
  if (message?.type === 'count') {
    process.send?.({ id: message.id, requests: gateway.requests, connections: gateway.connections });
  }
});
process.on('disconnect', () => {
  void gateway.close().finally(() => process.exit(0));
});
process.send?.({ url: gateway.url });
