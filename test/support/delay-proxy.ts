/**
 * A TCP proxy that adds latency in user space (this kernel has no `tc netem`): every chunk, each way, is held
 * for half a round trip drawn from [minRttMs, maxRttMs], and never overtakes the chunk before it, so TCP's
 * byte order is kept while the delay jitters. Node's timers give about 1 ms of granularity, so a round trip
 * below ~1 ms comes out at about 1-2 ms. A side's FIN follows the bytes it sent before it (QUIT's reply arrives).
 *
 *   const proxy = await startDelayProxy({ target: { host, port }, minRttMs: 0.5, maxRttMs: 2 });
 *   new Redis({ host: proxy.host, port: proxy.port });  ...  await proxy.close();
 */
import net from 'node:net';

export interface DelayProxyOptions {
  target: { host: string; port: number };
  /** @default 0.5 */
  minRttMs?: number;
  /** @default 2 */
  maxRttMs?: number;
  /** Where to listen. @default '127.0.0.1' */
  host?: string;
}

export interface DelayProxy {
  readonly host: string;
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

/** One direction of one connection: chunks leave in order, each no sooner than its due time. */
class DelayedPipe {
  readonly #queue: { due: number; chunk: Buffer }[] = [];
  #timer: NodeJS.Timeout | undefined;
  #lastDue = 0;
  #ending = false;

  constructor(
    private readonly to: net.Socket,
    private readonly oneWayMs: () => number,
  ) {}

  push(chunk: Buffer): void {
    const due = Math.max(performance.now() + this.oneWayMs(), this.#lastDue);
    this.#lastDue = due;
    this.#queue.push({ due, chunk });
    if (this.#queue.length === 1) this.#schedule();
  }

  /** The sender closed its side: pass that on once what it sent before has been delivered. */
  end(): void {
    this.#ending = true;
    if (this.#queue.length === 0) this.to.end();
  }

  #schedule(): void {
    const head = this.#queue[0];
    if (!head) {
      if (this.#ending) this.to.end();
      return;
    }
    this.#timer = setTimeout(() => this.#flush(), Math.max(0, head.due - performance.now()));
  }

  #flush(): void {
    this.#timer = undefined;
    const now = performance.now();
    while (this.#queue[0] && this.#queue[0].due <= now + 0.25) {
      const { chunk } = this.#queue.shift()!;
      if (!this.to.destroyed) this.to.write(chunk);
    }
    this.#schedule();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#queue.length = 0;
  }
}

export async function startDelayProxy(opts: DelayProxyOptions): Promise<DelayProxy> {
  const minRttMs = opts.minRttMs ?? 0.5;
  const maxRttMs = opts.maxRttMs ?? 2;
  if (!(minRttMs >= 0 && maxRttMs >= minRttMs))
    throw new RangeError(`delay proxy: need 0 <= minRttMs <= maxRttMs, got ${minRttMs}, ${maxRttMs}`);
  const oneWayMs = () => (minRttMs + Math.random() * (maxRttMs - minRttMs)) / 2;
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((client) => {
    connections++;
    client.setNoDelay(true);
    const upstream = net.connect(opts.target);
    upstream.setNoDelay(true);
    const up = new DelayedPipe(upstream, oneWayMs);
    const down = new DelayedPipe(client, oneWayMs);
    for (const s of [client, upstream]) sockets.add(s);
    client.on('data', (chunk) => up.push(chunk));
    upstream.on('data', (chunk) => down.push(chunk));
    // A side that ends (QUIT's reply, then the server's FIN) is passed on after its queued bytes; an error
    // or a full close takes both sides down.
    client.on('end', () => up.end());
    upstream.on('end', () => down.end());
    const end = () => {
      up.stop();
      down.stop();
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', () => {
        if (client.writableEnded && upstream.writableEnded) end();
      });
    }
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const address = server.address() as net.AddressInfo;
  return {
    host,
    port: address.port,
    get connections() {
      return connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
