/**
 * An Upstash-compatible REST gateway over a real redis-server, for local runs and for tests of the
 * REST transport.
 *
 * Protocol (as `@upstash/redis` speaks it, see node_modules/@upstash/redis/chunk-*.mjs `HttpClient`):
 * - POST `/` with a JSON command array `["SET","k","v"]` -> 200 `{"result": ...}`; a Redis error -> 400
 *   `{"error": "ERR ..."}`. POST `/pipeline` and `/multi-exec` with an array of command arrays -> 200 with
 *   one `{"result"}` or `{"error"}` per command (multi-exec inside MULTI/EXEC). Path form too: `/set/k/v`
 *   (GET or POST; a POST body is appended as the last argument, as Upstash does).
 * - `Authorization: Bearer <token>`, compared in constant time; otherwise 401 `{"error":"Unauthorized"}`.
 * - `Upstash-Encoding: base64`: every string in the result is base64 of its raw bytes, recursively in arrays,
 *   except a top-level `"OK"`, which Upstash leaves alone (the client's `decode()` special-cases it at the
 *   top level only, so an `"OK"` inside an array is encoded like any other string). Errors are never encoded.
 * - Replies: integers as JSON numbers, bulk and status strings as strings, nil as null, arrays nested.
 *
 * Commands go through one ioredis connection (RESP2, as Upstash answers) with `callBuffer` and the command
 * name upper-cased, which keeps ioredis' reply transformers (HGETALL -> object, ...) out of the way. Commands
 * that would change the shared connection's state (MULTI, SELECT, SUBSCRIBE, blocking pops, ...) are refused.
 * When Redis is down, requests fail at once with a 503 instead of queueing; nothing is ever resent.
 *
 * Server administration that Upstash refuses (SHUTDOWN, CONFIG, DEBUG, SAVE, REPLICAOF, ...) is refused too, with
 * the same kind of error reply, so code that works here does not call what Upstash would reject.
 *
 * CLI (`npm run gateway`, or on its own):
 *   UPSTASH_REDIS_REST_TOKEN=T npx tsx dev/gateway.ts --redis 127.0.0.1:6380 [--port 8079] [--host 127.0.0.1]
 * The token (and the Redis password, REDIS_PASSWORD) come from the environment only, never from an argument,
 * which any user would see in `ps`. The token is never logged or echoed.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { realpathSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { inspect, parseArgs } from 'node:util';
import { Redis, ReplyError } from 'ioredis';

export interface GatewayOptions {
  /** `tls`: reach redis over TLS (its `--tls-port`), with these node:tls options (`ca`, ...). */
  redis: { host: string; port: number; password?: string; tls?: ConnectionOptions };
  token: string;
  /** @default 0 (a free port) */
  port?: number;
  /** @default '127.0.0.1' */
  host?: string;
  /**
   * How long an idle keep-alive connection stays open. Longer than undici's client-side idle timeout, so the
   * client, not the server, closes idle sockets (no request lands on a socket the server is closing).
   * @default 60_000
   */
  keepAliveTimeoutMs?: number;
  /** @default 16 MiB */
  maxBodyBytes?: number;
  /** Serve https with this key and certificate (PEM), as Upstash does; the url is then `https://`. */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

export interface Gateway {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly token: string;
  /** TCP connections accepted so far (keep-alive reuses one). */
  readonly connections: number;
  /** The most TCP connections open at the same time so far. */
  readonly peakConnections: number;
  /** HTTP requests handled so far. */
  readonly requests: number;
  close(): Promise<void>;
}

type Json = null | number | string | Json[];
type Reply = null | number | bigint | Buffer | string | Error | Reply[];

class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Connection-state, blocking and replication commands: they would break the one shared connection. */
const REFUSED = new Set(
  [
    'AUTH HELLO SELECT SWAPDB RESET QUIT CLIENT MONITOR SYNC PSYNC REPLCONF',
    'MULTI EXEC DISCARD WATCH UNWATCH',
    'SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE',
    'BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP XREAD XREADGROUP WAIT WAITAOF',
  ]
    .join(' ')
    .split(' '),
);

/** Server administration: Upstash refuses it (a managed server), and so does the gateway. */
const ADMIN = new Set(
  [
    'SHUTDOWN CONFIG DEBUG SAVE BGSAVE BGREWRITEAOF LASTSAVE REPLICAOF SLAVEOF FAILOVER CLUSTER READONLY',
    'READWRITE MODULE ACL MIGRATE LATENCY SLOWLOG MEMORY',
  ]
    .join(' ')
    .split(' '),
);

const OK = Buffer.from('OK');

/** A reply as Upstash's JSON: raw strings, or base64 of their bytes (a top-level "OK" excepted). */
function toJson(value: Reply, base64: boolean, topLevel: boolean): Json {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map((item) => toJson(item, base64, false));
  // An error nested in an array (a Lua table holding an error reply): its message, as a string.
  const bytes = value instanceof Error ? Buffer.from(value.message) : Buffer.from(value);
  if (!base64) return bytes.toString('utf8');
  if (topLevel && bytes.equals(OK)) return 'OK';
  return bytes.toString('base64');
}

function isReplyError(error: unknown): error is Error {
  return error instanceof ReplyError || (error instanceof Error && error.name === 'ReplyError');
}

function parseCommand(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new HttpError(400, 'ERR a command must be a non-empty JSON array');
  }
  const command = value.map((arg) => {
    if (typeof arg === 'string') return arg;
    if (typeof arg === 'number' || typeof arg === 'boolean') return String(arg);
    throw new HttpError(400, 'ERR command arguments must be strings, numbers or booleans');
  });
  const name = (command[0] ?? '').toUpperCase();
  if (REFUSED.has(name)) throw new HttpError(400, `ERR '${name}' is not supported by the oncely dev gateway`);
  if (ADMIN.has(name)) {
    throw new HttpError(
      400,
      `ERR '${name}' is server administration, which Upstash (and this gateway) refuses`,
    );
  }
  return [name, ...command.slice(1)];
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'ERR malformed JSON body');
  }
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new HttpError(413, `ERR request body larger than ${limit} bytes`));
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

function send(res: http.ServerResponse, status: number, payload: unknown): void {
  const body = JSON.stringify(payload);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

class RestGateway implements Gateway {
  readonly #server: http.Server;
  readonly #scheme: 'http' | 'https';
  readonly #redis: Redis;
  readonly #token: string;
  readonly #expected: Buffer;
  readonly #maxBodyBytes: number;
  #connections = 0;
  #open = 0;
  #peak = 0;
  #requests = 0;
  #port = 0;
  #host: string;

  constructor(opts: GatewayOptions, redis: Redis) {
    this.#redis = redis;
    this.#token = opts.token;
    this.#expected = createHash('sha256').update(opts.token).digest();
    this.#maxBodyBytes = opts.maxBodyBytes ?? 16 * 1024 * 1024;
    this.#host = opts.host ?? '127.0.0.1';
    const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      this.#handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) send(res, 500, { error: `ERR gateway: ${(error as Error).message}` });
        else res.destroy();
      });
    };
    this.#scheme = opts.tls ? 'https' : 'http';
    this.#server = opts.tls
      ? https.createServer({ keepAlive: true, ...opts.tls }, handle)
      : http.createServer({ keepAlive: true }, handle);
    const keepAliveTimeoutMs = opts.keepAliveTimeoutMs ?? 60_000;
    this.#server.keepAliveTimeout = keepAliveTimeoutMs;
    this.#server.headersTimeout = keepAliveTimeoutMs + 1000;
    this.#server.on('connection', (socket) => {
      this.#connections++;
      this.#peak = Math.max(this.#peak, ++this.#open);
      socket.once('close', () => {
        this.#open--;
      });
    });
  }

  get url(): string {
    return `${this.#scheme}://${this.#host.includes(':') ? `[${this.#host}]` : this.#host}:${this.#port}`;
  }
  get port(): number {
    return this.#port;
  }
  get token(): string {
    return this.#token;
  }
  get connections(): number {
    return this.#connections;
  }
  get peakConnections(): number {
    return this.#peak;
  }
  get requests(): number {
    return this.#requests;
  }

  [inspect.custom](): string {
    return `Gateway { url: '${this.url}', connections: ${this.#connections}, requests: ${this.#requests} }`;
  }

  toJSON(): { url: string } {
    return { url: this.url };
  }

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, this.#host, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
    // Not QUIT: a paused (SIGSTOPped) server would never answer it.
    this.#redis.disconnect();
  }

  #authorized(header: string | undefined): boolean {
    const match = /^Bearer\s+(.+)$/i.exec(header ?? '');
    if (!match?.[1]) return false;
    // Hashing first makes the lengths equal, so timingSafeEqual neither throws nor leaks the token's length.
    return timingSafeEqual(createHash('sha256').update(match[1].trim()).digest(), this.#expected);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.#requests++;
    if (!this.#authorized(req.headers.authorization)) return send(res, 401, { error: 'Unauthorized' });
    const method = req.method ?? 'GET';
    if (!['GET', 'POST', 'PUT'].includes(method)) return send(res, 405, { error: 'ERR method not allowed' });
    const base64 = String(req.headers['upstash-encoding'] ?? '').toLowerCase() === 'base64';
    const { pathname } = new URL(req.url ?? '/', 'http://gateway');
    try {
      const body = await readBody(req, this.#maxBodyBytes);
      if (pathname === '/pipeline' || pathname === '/multi-exec') {
        const commands = parseJson(body);
        if (!Array.isArray(commands) || commands.length === 0) {
          throw new HttpError(400, 'ERR a pipeline must be a non-empty JSON array of commands');
        }
        const parsed = commands.map(parseCommand);
        const replies = pathname === '/pipeline' ? await this.#pipeline(parsed) : await this.#multi(parsed);
        return send(
          res,
          200,
          replies.map((r) =>
            r instanceof Error ? { error: r.message } : { result: toJson(r, base64, true) },
          ),
        );
      }
      const command =
        pathname === '/' ? parseCommand(parseJson(body)) : parseCommand(this.#pathCommand(pathname, body));
      const reply = await this.#run(command);
      return send(res, 200, { result: toJson(reply, base64, true) });
    } catch (error) {
      if (error instanceof HttpError) return send(res, error.status, { error: error.message });
      if (isReplyError(error)) return send(res, 400, { error: error.message });
      return send(res, 503, { error: `ERR gateway: redis unavailable: ${(error as Error).message}` });
    }
  }

  #pathCommand(pathname: string, body: Buffer): string[] {
    const segments = pathname.split('/').filter(Boolean);
    try {
      const command = segments.map((s) => decodeURIComponent(s));
      return body.length > 0 ? [...command, body.toString('utf8')] : command;
    } catch {
      throw new HttpError(400, 'ERR malformed path');
    }
  }

  #run([name, ...args]: string[]): Promise<Reply> {
    return this.#redis.callBuffer(name ?? '', ...args) as Promise<Reply>;
  }

  /** One round trip, not atomic: each command's reply or Redis error, in order. */
  async #pipeline(commands: string[][]): Promise<Reply[]> {
    const pipeline = this.#redis.pipeline();
    for (const [name, ...args] of commands) pipeline.callBuffer(name ?? '', ...args);
    const results = (await pipeline.exec()) ?? [];
    return results.map(([error, reply]) => {
      if (error && !isReplyError(error)) throw error; // connection trouble: fail the whole request
      return error ?? (reply as Reply);
    });
  }

  /** MULTI / EXEC: replies and run-time errors per command; a queueing error (EXECABORT) fails it all. */
  async #multi(commands: string[][]): Promise<Reply[]> {
    const multi = this.#redis.multi();
    for (const [name, ...args] of commands) multi.callBuffer(name ?? '', ...args);
    const results = await multi.exec().catch((error: Error & { previousErrors?: Error[] }) => {
      const causes = (error.previousErrors ?? []).map((e) => e.message);
      throw isReplyError(error) && causes.length > 0
        ? Object.assign(new Error(`${error.message} (${causes.join('; ')})`), { name: 'ReplyError' })
        : error;
    });
    if (!results) throw new HttpError(400, 'ERR transaction aborted');
    return results.map(([error, reply]) => {
      if (error && !isReplyError(error)) throw error;
      return error ?? (reply as Reply);
    });
  }
}

/** Starts the gateway once its Redis connection is ready; `close()` stops both. */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  if (!opts.token) throw new Error('startGateway: a non-empty token is required');
  const redis = new Redis({
    host: opts.redis.host,
    port: opts.redis.port,
    password: opts.redis.password,
    ...(opts.redis.tls ? { tls: opts.redis.tls } : {}),
    protocol: 2,
    lazyConnect: true,
    // Fail fast while Redis is down (a REST call then errors like an unreachable Upstash would) and never
    // resend a command whose connection dropped: it may already have been applied.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (attempt) => Math.min(attempt * 50, 500),
    connectTimeout: 2000,
  });
  // Reported per request; reconnecting is ioredis' job. The last one names why a first connect failed (a
  // TLS certificate problem, a refused port): connect() itself only says the connection closed.
  let lastError: Error | undefined;
  redis.on('error', (error: Error) => {
    lastError = error;
  });
  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    const why = lastError?.message ?? (error as Error).message;
    throw new Error(`startGateway: cannot reach redis ${opts.redis.host}:${opts.redis.port} (${why})`, {
      cause: lastError ?? error,
    });
  }
  const gateway = new RestGateway(opts, redis);
  try {
    await gateway.listen(opts.port ?? 0);
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  return gateway;
}

// -----------------------------------------------------------------------------------------------------------
// CLI

async function main(): Promise<void> {
  const secretFlag = process.argv.find((arg) => /^--(token|password)(=|$)/.test(arg));
  if (secretFlag) {
    const name = secretFlag.startsWith('--token') ? 'UPSTASH_REDIS_REST_TOKEN' : 'REDIS_PASSWORD';
    console.error(`oncely gateway: pass the secret in ${name}, not as an argument (ps shows every argument)`);
    process.exit(2);
  }
  const { values } = parseArgs({
    options: {
      redis: { type: 'string', default: '127.0.0.1:6380' },
      port: { type: 'string', default: '8079' },
      host: { type: 'string', default: '127.0.0.1' },
    },
  });
  const token = process.env.UPSTASH_REDIS_REST_TOKEN;
  const match = /^(.+):(\d+)$/.exec(values.redis);
  if (!token || !match?.[1] || !match[2]) {
    console.error(
      'usage: UPSTASH_REDIS_REST_TOKEN=T [REDIS_PASSWORD=P] tsx dev/gateway.ts --redis HOST:PORT\n' +
        '                          [--port 8079] [--host 127.0.0.1]\n' +
        '       (the token and password come from the environment only: an argument shows in ps)',
    );
    process.exit(2);
  }
  const gateway = await startGateway({
    redis: {
      host: match[1],
      port: Number(match[2]),
      password: process.env.REDIS_PASSWORD,
    },
    token,
    port: Number(values.port),
    host: values.host,
  });
  console.log(`oncely gateway: ${gateway.url} -> redis ${values.redis}`);
  const shutdown = (): void => {
    gateway.close().finally(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

const entry = process.argv[1];
if (entry && realpathSync(entry) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(`oncely gateway: ${(error as Error).message}`);
    process.exit(1);
  });
}
