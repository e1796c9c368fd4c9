/**
 * A TCP proxy in front of one server that can fail the way networks do without closing anything:
 *
 * - `stall()`: every connection open now stops carrying bytes in both directions and stays open (a half-open
 *   path: a failover that moved an address, a NAT or security-group drop without a reset). New connections
 *   are held the same way (accepted, never forwarded) until `heal()`.
 * - `heal()`: new connections flow again. Connections stalled before stay stalled for good, as a half-open
 *   socket does: only a client that gives up on its connection gets through.
 * - `dropReplies(n)`: the next `n` chunks from the server are thrown away, the connection kept (a reply lost
 *   on the way; every later reply on that socket then answers the command before it).
 *
 * Bytes are never reordered or invented. `stop()` destroys every socket and closes the listener.
 */
import { once } from 'node:events';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

export interface StallProxy {
  readonly host: string;
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  stall(): void;
  heal(): void;
  dropReplies(n: number): void;
  /** Replies thrown away so far. */
  readonly dropped: number;
  stop(): Promise<void>;
}

interface Pair {
  client: Socket;
  server: Socket;
  stalled: boolean;
}

export async function startStallProxy(target: { host: string; port: number }): Promise<StallProxy> {
  const pairs = new Set<Pair>();
  let stalledNew = false;
  let toDrop = 0;
  let dropped = 0;
  let accepted = 0;

  const server: Server = createServer((client) => {
    accepted += 1;
    client.setNoDelay(true);
    const upstream = tcpConnect({ host: target.host, port: target.port });
    upstream.setNoDelay(true);
    const pair: Pair = { client, server: upstream, stalled: stalledNew };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.on('data', (chunk) => {
      if (!pair.stalled) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (pair.stalled) return;
      if (toDrop > 0) {
        toDrop -= 1;
        dropped += 1;
        return;
      }
      client.write(chunk);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('stall proxy: no TCP address');

  return {
    host: '127.0.0.1',
    port: address.port,
    get accepted() {
      return accepted;
    },
    get dropped() {
      return dropped;
    },
    stall() {
      stalledNew = true;
      for (const p of pairs) p.stalled = true;
    },
    heal() {
      stalledNew = false;
    },
    dropReplies(n) {
      toDrop = n;
    },
    async stop() {
      for (const p of pairs) {
        p.client.destroy();
        p.server.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
