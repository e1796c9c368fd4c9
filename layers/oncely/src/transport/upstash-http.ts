/**
 * What upstashStore loads on its first call (a chunk of its own in the layer): `@upstash/redis`, and the
 * requester oncely gives it. Not part of the public API.
 */
import type { Agent, ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import { Redis, type Requester, type UpstashRequest, type UpstashResponse } from '@upstash/redis';
import { redact, StoreAuthError, StoreError, StoreUnavailableError } from '../errors.js';
import { callDeadline } from './upstash.js';
import type { RequestSlots } from './upstash-client.js';

/** Network error codes that prove the request never reached the server: safe to report as not applied. */
const NOT_SENT = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * A socket idle this long is not reused: the next request opens a new connection. Shorter than the idle
 * timeout of the servers we talk to (Node's http server: 5 s; undici uses 4 s too), so a request is never
 * written to a socket the server is closing. Checked when a request starts as well as by the agent's timer,
 * because a frozen Lambda sandbox runs no timers: after a thaw the stale sockets go before the first request.
 */
const IDLE_SOCKET_MS = 4000;

/**
 * `@upstash/redis` returning raw replies over a requester of ours. The client's constructor takes options
 * only with a URL and token (then it sends through `fetch`); given a requester it ignores them, and its
 * commands would JSON-parse every string reply (`"42"` → 42, a stored JSON result → an object). Commands and
 * pipelines read their options from the protected `opts` member when they are created, so this subclass sets
 * it. Checked against @upstash/redis 1.39.0 (the version package.json pins), by the raw-reply tests of
 * test/unit/upstash-raw-client.test.ts and test/integration/upstash-transport.test.ts, which fail if a
 * client version parses replies again; a version without the member is refused here.
 */
export class RawRedis extends Redis {
  constructor(requester: Requester, store = 'upstash') {
    super(requester);
    if (!Object.hasOwn(this, 'opts')) {
      throw new StoreError(`${store}: this @upstash/redis version is not supported (oncely expects 1.39)`, {
        store,
        ambiguous: false,
      });
    }
    this.opts = { automaticDeserialization: false };
  }
}

export interface RawClient {
  redis: Redis;
  /** Closes the kept-alive sockets. */
  close(): void;
}

/**
 * A RawRedis over a keep-alive `node:http(s)` requester for `url`, at most `slots.size` requests (and
 * sockets) at a time.
 */
export async function rawClient(
  url: URL,
  token: string,
  slots: RequestSlots,
  opts: { name: string; timeoutMs: number; base64: boolean },
): Promise<RawClient> {
  const transport = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  const agent = new transport.Agent({
    keepAlive: true,
    noDelay: true,
    timeout: IDLE_SOCKET_MS,
    scheduling: 'lifo',
    maxSockets: slots.size,
    maxFreeSockets: slots.size,
  });
  return {
    redis: new RawRedis(requester(url, token, transport.request, agent, slots, opts), opts.name),
    close: () => agent.destroy(),
  };
}

type RequestFn = (options: RequestOptions, onResponse: (res: IncomingMessage) => void) => ClientRequest;
type Reply = UpstashResponse<unknown>;

/**
 * The client's Requester: POSTs the command (path `/`) or the batch (`/pipeline`) as JSON and resolves with
 * the parsed reply: `{ result }` / `{ error }`, or an array of them for a pipeline, one per command.
 * Redis errors (HTTP 400, e.g. NOSCRIPT) are thrown as plain errors carrying the server's message; everything
 * else is a StoreError: 401/403 → StoreAuthError; no reply within `timeoutMs`, a reset connection, a 5xx or
 * an unreadable 200 → StoreUnavailableError, ambiguous (the command may have run); a connection that could
 * not be made, or no slot free (RequestSlots) before the call's deadline → StoreUnavailableError, not
 * ambiguous. Never retries. Messages never contain the token.
 */
function requester(
  url: URL,
  token: string,
  request: RequestFn,
  agent: Agent,
  slots: RequestSlots,
  opts: { name: string; timeoutMs: number; base64: boolean },
): Requester {
  const { name, timeoutMs, base64 } = opts;
  const basePath = url.pathname.replace(/\/+$/, '');
  const headers: Record<string, string | number> = {
    authorization: `Bearer ${token}`,
    'content-type': 'application/json',
  };
  if (base64) headers['upstash-encoding'] = 'base64';
  let lastActive = 0;
  const unavailable = (why: string, ambiguous: boolean, cause?: unknown) =>
    new StoreUnavailableError(`${name}: ${why}`, { store: name, ambiguous, cause });

  const self: Requester & { upstashSyncToken: string } = {
    readYourWrites: true,
    upstashSyncToken: '',
    request: <T>(req: UpstashRequest) =>
      new Promise<UpstashResponse<T>>((resolve, reject) => {
        // The call's deadline (see callDeadline) started when the call was made: time spent waiting for a
        // slot counts, and a second request of the call (EVAL after NOSCRIPT) gets only what is left.
        const call = callDeadline.current;
        const deadline = (call?.startedAt ?? performance.now()) + timeoutMs;
        const send = () => sendHolding(req, deadline, resolve as (r: Reply | Reply[]) => void, reject);
        if (call?.holdsSlot) {
          call.holdsSlot = false;
          send();
        } else if (slots.tryTake()) {
          send();
        } else {
          let started = false;
          const withdraw = slots.wait(() => {
            started = true;
            clearTimeout(timer);
            send();
          });
          // Deferred as below (sendHolding): a slot freed by a reply already received is taken first.
          const timer = setTimeout(
            () =>
              setImmediate(() => {
                if (started) return;
                withdraw();
                reject(notSent());
              }),
            deadline - performance.now(),
          );
        }
      }),
  };

  /** Fails a request that never left: nothing reached the server. */
  const notSent = () => unavailable(`no connection free within ${timeoutMs} ms (not sent)`, false);

  /** Sends one request on a slot it holds, until `deadline`; gives the slot back when it settles. */
  const sendHolding = (
    req: UpstashRequest,
    deadline: number,
    resolve: (reply: Reply | Reply[]) => void,
    reject: (err: Error) => void,
  ) => {
    const now = performance.now();
    if (deadline - now <= 0) {
      slots.release();
      reject(notSent());
      return;
    }
    if (now - lastActive > IDLE_SOCKET_MS) dropIdleSockets(agent);
    lastActive = now;
    const batch = Array.isArray(req.body) && Array.isArray(req.body[0]) ? req.body.length : undefined;
    const body = JSON.stringify(req.body);
    headers['content-length'] = Buffer.byteLength(body);
    // Read-your-writes across Upstash replicas, as the client's own requester does: echo the last token.
    if (self.upstashSyncToken) headers['upstash-sync-token'] = self.upstashSyncToken;
    let done = false;
    const finish = (err: Error | undefined, reply?: Reply | Reply[]) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      lastActive = performance.now();
      if (err) reject(err);
      else resolve(reply as Reply | Reply[]);
      slots.release();
    };
    const r = request(
      {
        protocol: url.protocol,
        hostname: url.hostname,
        port: url.port,
        method: 'POST',
        path: `${basePath}/${(req.path ?? []).join('/')}`,
        headers,
        agent,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => finish(unavailable(`response interrupted (${codeOf(e)})`, true, e)));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const next = res.headers['upstash-sync-token'];
          if (typeof next === 'string') self.upstashSyncToken = next;
          if (status === 401 || status === 403) {
            finish(
              new StoreAuthError(`${name}: authentication failed (check UPSTASH_REDIS_REST_TOKEN)`, {
                store: name,
                ambiguous: false,
              }),
            );
            return;
          }
          let parsed: Reply | Reply[] | undefined;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Reply | Reply[];
          } catch {
            parsed = undefined;
          }
          const error = parsed && !Array.isArray(parsed) ? parsed.error : undefined;
          if (status >= 200 && status < 300 && parsed !== null && typeof parsed === 'object') {
            if (batch !== undefined && (!Array.isArray(parsed) || parsed.length !== batch)) {
              // Sent and answered, but not with one reply per command: whether each ran is unknown.
              finish(unavailable(`unexpected /pipeline reply for ${batch} commands`, true));
            } else if (Array.isArray(parsed)) {
              finish(
                undefined,
                parsed.map((p) => reply(p, base64)),
              );
            } else {
              finish(undefined, reply(parsed, base64));
            }
          } else if (status >= 400 && status < 500 && error) {
            finish(new Error(redact(error, [token])));
          } else {
            // A 4xx without a Redis error (a proxy's 404, a 413) was refused; anything else may have run.
            const refused = status >= 400 && status < 500;
            const detail = error ? `: ${redact(error, [token])}` : '';
            finish(unavailable(`HTTP ${status}${detail}`, !refused));
          }
        });
      },
    );
    const timer = setTimeout(() => {
      // A busy process runs due timers before it reads the sockets: a reply that arrived in time but was
      // not read yet is read first (the poll phase runs before setImmediate's), and it answers the call.
      setImmediate(() => {
        if (done) return;
        // Not sent if the connection was never made; otherwise the server may have run the command.
        const connected = r.socket ? !r.socket.connecting : false;
        finish(unavailable(`no reply within ${timeoutMs} ms`, connected));
        r.destroy();
      });
    }, deadline - now);
    r.on('error', (e) => {
      const code = codeOf(e);
      finish(unavailable(`unreachable (${code})`, !NOT_SENT.has(code), e));
    });
    r.end(body);
  };
  return self;
}

/** One command's reply as the client reads it: a nil result is `null` (the client rejects `undefined`). */
function reply(r: Reply, base64: boolean): Reply {
  if (r.error !== undefined) return { error: r.error };
  return { result: base64 ? decodeValue(r.result ?? null, true) : (r.result ?? null) };
}

function codeOf(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' ? code : 'network error';
}

function dropIdleSockets(agent: Agent): void {
  for (const sockets of Object.values(agent.freeSockets)) {
    for (const s of sockets ?? []) s.destroy();
  }
}

/** Undoes `Upstash-Encoding: base64` (as the client's own requester does): every string but a top-level "OK". */
function decodeValue(v: unknown, top: boolean): unknown {
  if (typeof v === 'string') return top && v === 'OK' ? v : Buffer.from(v, 'base64').toString('utf8');
  if (Array.isArray(v)) return v.map((x) => decodeValue(x, false));
  return v;
}
