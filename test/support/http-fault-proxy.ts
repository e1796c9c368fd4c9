import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * What the proxy does with one request:
 * - `pass`: forward it to the target and send the reply back;
 * - `swallow`: forward it (so the target applies it) but never answer: the client times out, ambiguous;
 * - `503`: answer 503 without forwarding (a gateway that lost its Redis connection).
 */
export type FaultMode = 'pass' | 'swallow' | '503';

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: point a REST store here instead of at the gateway. */
  readonly url: string;
  /** The mode for each request, by its body (the JSON command): decided when the request arrives. */
  mode: (body: string) => FaultMode;
  /** Every request seen: its body and what the proxy did. */
  readonly seen: { body: string; mode: FaultMode }[];
  close(): Promise<void>;
}

/**
 * An HTTP proxy in front of the REST gateway that can drop replies or answer 503, to test what a REST store
 * does when the path to Upstash fails part-way. Everything it forwards reaches a real redis-server.
 */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const held = new Set<http.ServerResponse>();
  const agent = new http.Agent({ keepAlive: true });
  const proxy: FaultProxy = {
    url: '',
    mode: () => 'pass',
    seen: [],
    close: async () => {
      for (const res of held) res.destroy();
      agent.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const mode = proxy.mode(body);
      proxy.seen.push({ body, mode });
      if (mode === '503') {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'ERR gateway: redis unavailable: reconnecting' }));
        return;
      }
      if (mode === 'swallow') held.add(res);
      const out = http.request(
        new URL(req.url ?? '/', target),
        { method: req.method, headers: req.headers, agent },
        (reply) => {
          const parts: Buffer[] = [];
          reply.on('data', (c: Buffer) => parts.push(c));
          reply.on('end', () => {
            if (mode === 'swallow') return; // applied by Redis; the client never hears of it
            res.writeHead(reply.statusCode ?? 502, reply.headers);
            res.end(Buffer.concat(parts));
          });
        },
      );
      out.on('error', () => {
        if (mode !== 'swallow') res.destroy();
      });
      out.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(proxy, { url: `http://127.0.0.1:${port}` });
}
