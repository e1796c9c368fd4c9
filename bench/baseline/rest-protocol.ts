/**
 * The benchmark's baseline, not part of oncely: the REST transport as it was before @upstash/redis became the
 * one REST client (issue 14), the REST protocol spoken by hand over node:http. Kept frozen so that
 * `npm run bench` measures the layer's REST path against it: pair latency (the "hand-written protocol" REST
 * contender) and bundle bytes and cold start (the "before" layer, bench/bundles.ts). Do not use it elsewhere.
 */
import type { Agent, ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import { redact, StoreAuthError, StoreError, StoreUnavailableError } from '../../layers/oncely/src/errors.js';
import type { Script } from '../../layers/oncely/src/scripts.js';
import { evalWithFallback, runManyWithFallback, settle } from '../../layers/oncely/src/transport/shared.js';
import {
  type CallResult,
  DEFAULT_TIMEOUT_MS,
  type ScriptArg,
  type ScriptCall,
  type Store,
  type TransportOptions,
} from '../../layers/oncely/src/transport/types.js';

export interface ProtocolStoreOptions extends TransportOptions {
  /** The database's REST URL (`UPSTASH_REDIS_REST_URL`). */
  url: string;
  /** The REST token (`UPSTASH_REDIS_REST_TOKEN`). Never logged, never part of an error. */
  token: string;
  /**
   * Ask the server to base64-encode string replies (Upstash's default, safe for binary values).
   * @default false (our replies are integers and UTF-8 JSON, and decoding costs time)
   */
  base64?: boolean;
}

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

/** A command's reply `{ result }` or `{ error }`; `/pipeline` answers with one per command. */
interface CommandReply {
  result?: unknown;
  error?: string;
}
type RestReply = CommandReply | CommandReply[];
type Command = (string | number)[];

/**
 * A Store over Upstash's REST API, spoken directly: a command is a JSON array POSTed to `/`, a batch an array
 * of them POSTed to `/pipeline`, sent over `node:http(s)` with a keep-alive agent. `fetch` costs several
 * times the CPU per request and tens of milliseconds on first use, and `@upstash/redis` (95 KB minified)
 * would only build the arrays once the HTTP layer is ours (docs/benchmarks.md). The protocol details it
 * handles are kept: Bearer auth, the read-your-writes sync token, the optional base64 response encoding.
 * No retries: a timed-out write is reported as ambiguous, never silently sent twice. Every request has its
 * own timeout.
 */
export function protocolStore(options: ProtocolStoreOptions): Store {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { token } = options;
  let url: URL | undefined;
  try {
    url = new URL(options.url);
  } catch {
    url = undefined;
  }
  const name = `upstash(${url?.host ?? 'invalid-url'})`;
  let sender: Promise<(path: string, body: unknown) => Promise<RestReply>> | undefined;
  let agent: Agent | undefined;
  const send = async (path: string, body: unknown): Promise<RestReply> => {
    sender ??= (async () => {
      if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
        throw new StoreError(`${name}: the REST URL must be http(s)`, { store: name, ambiguous: false });
      }
      const transport = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
      agent = new transport.Agent({
        keepAlive: true,
        noDelay: true,
        timeout: IDLE_SOCKET_MS,
        scheduling: 'lifo',
      });
      return requester(url, token, transport.request, agent, {
        name,
        timeoutMs,
        base64: options.base64 ?? false,
      });
    })();
    return (await sender)(path, body);
  };

  /** A Redis error reply (NOSCRIPT, WRONGTYPE, …): not a transport failure, the command did not run. */
  const mapError = (err: unknown): Error => {
    if (err instanceof StoreError) return err;
    const e = err instanceof Error ? err : new Error(String(err));
    return new StoreError(`${name}: ${redact(e.message, [token])}`, { store: name, ambiguous: false });
  };

  const command = (
    op: 'EVALSHA' | 'EVAL',
    code: string,
    keys: readonly string[],
    args: readonly ScriptArg[],
  ) => [op, code, keys.length, ...keys, ...args] as Command;
  const one = async (cmd: Command): Promise<unknown> => {
    const reply = (await send('', cmd)) as CommandReply;
    if (reply.error !== undefined) throw new Error(reply.error);
    return reply.result ?? null;
  };
  const evalsha = (sha: string, keys: readonly string[], args: readonly ScriptArg[]) =>
    one(command('EVALSHA', sha, keys, args));
  const evalLua = (lua: string, keys: readonly string[], args: readonly ScriptArg[]) =>
    one(command('EVAL', lua, keys, args));

  const pipeline = async (calls: readonly ScriptCall[], useLua: boolean): Promise<CallResult[]> => {
    const body = calls.map((c) =>
      useLua
        ? command('EVAL', c.script.lua, c.keys, c.args)
        : command('EVALSHA', c.script.sha1, c.keys, c.args),
    );
    const replies = await send('pipeline', body);
    if (!Array.isArray(replies) || replies.length !== calls.length) {
      // Sent and answered, but not with one reply per command: whether each ran is unknown.
      throw new StoreUnavailableError(`${name}: unexpected /pipeline reply for ${calls.length} commands`, {
        store: name,
        ambiguous: true,
      });
    }
    return replies.map((r) =>
      settle(r.result ?? null, r.error !== undefined ? new Error(r.error) : undefined, mapError),
    );
  };

  const runMany = async (calls: readonly ScriptCall[]): Promise<CallResult[]> => {
    if (calls.length === 0) return [];
    try {
      return await runManyWithFallback(calls, pipeline);
    } catch (err) {
      throw mapError(err);
    }
  };

  const runOne = async (script: Script, keys: readonly string[], args: readonly ScriptArg[]) => {
    try {
      return await evalWithFallback(script, keys, args, evalsha, evalLua);
    } catch (err) {
      throw mapError(err);
    }
  };

  // Calls made in the same tick (concurrent locks, a Promise.all in a handler, workers woken by one reply)
  // share one request: one call goes alone to `/`, several go to `/pipeline` (one round trip, a reply or
  // error per call; a failed request fails each of its calls with the same error). process.nextTick runs once
  // the promise jobs of the current turn have drained, so every caller they wake is in the batch; unlike
  // setImmediate it is not faked by test frameworks' fake timers. A batch that reaches BATCH_CALLS goes at
  // once and the rest of the tick's calls follow in another: the server starts on the first part while the
  // client is still preparing the rest (measured: +40 % pairs/s under 50 workers, docs/benchmarks.md).
  let queue: Pending[] = [];
  const flush = () => {
    if (queue.length === 0) return;
    const batch = queue;
    queue = [];
    if (batch.length === 1) {
      const p = batch[0]!;
      runOne(p.script, p.keys, p.args).then(p.resolve, p.reject);
      return;
    }
    runMany(batch).then(
      (results) =>
        results.forEach((r, i) => {
          const p = batch[i]!;
          if (r.ok) p.resolve(r.value);
          else p.reject(r.error);
        }),
      (err: unknown) => {
        for (const p of batch) p.reject(err);
      },
    );
  };

  return {
    kind: 'upstash',
    name,
    // Each request is bounded by its own timer (see requester), so a call takes at most two timeouts:
    // EVALSHA, and EVAL after NOSCRIPT.
    run(script: Script, keys: readonly string[], args: readonly ScriptArg[]) {
      return new Promise((resolve, reject) => {
        const n = queue.push({ script, keys, args, resolve, reject });
        if (n === 1) process.nextTick(flush);
        else if (n === BATCH_CALLS) flush();
      });
    },
    runMany,
    async close() {
      agent?.destroy();
    },
  };
}

interface Pending extends ScriptCall {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** Most calls in one coalesced `/pipeline` request. */
const BATCH_CALLS = 32;

// ----------------------------------------------------------------------------------------------- requester

type RequestFn = (options: RequestOptions, onResponse: (res: IncomingMessage) => void) => ClientRequest;

/**
 * Sends one REST request (a command to `/`, or a batch to `/pipeline`) and resolves with the parsed reply:
 * `{ result }` / `{ error }`, or an array of them for a pipeline.
 * Redis errors (HTTP 400, e.g. NOSCRIPT) are thrown as plain errors carrying the server's message; everything
 * else is a StoreError: 401/403 → StoreAuthError; no reply within `timeoutMs`, a reset connection, a 5xx or
 * an unreadable 200 → StoreUnavailableError, ambiguous (the command may have run); a connection that could
 * not be made → StoreUnavailableError, not ambiguous. Messages never contain the token.
 */
function requester(
  url: URL,
  token: string,
  request: RequestFn,
  agent: Agent,
  opts: { name: string; timeoutMs: number; base64: boolean },
): (path: string, body: unknown) => Promise<RestReply> {
  const { name, timeoutMs, base64 } = opts;
  const basePath = url.pathname.replace(/\/+$/, '');
  const headers: Record<string, string | number> = {
    authorization: `Bearer ${token}`,
    'content-type': 'application/json',
  };
  if (base64) headers['upstash-encoding'] = 'base64';
  let syncToken = '';
  let lastActive = 0;
  const unavailable = (why: string, ambiguous: boolean, cause?: unknown) =>
    new StoreUnavailableError(`${name}: ${why}`, { store: name, ambiguous, cause });

  return (path, payload) =>
    new Promise<RestReply>((resolve, reject) => {
      const now = performance.now();
      if (now - lastActive > IDLE_SOCKET_MS) dropIdleSockets(agent);
      lastActive = now;
      const body = JSON.stringify(payload);
      headers['content-length'] = Buffer.byteLength(body);
      // Read-your-writes across Upstash replicas, as @upstash/redis does: echo the last sync token we got.
      if (syncToken) headers['upstash-sync-token'] = syncToken;
      let done = false;
      const finish = (err: Error | undefined, reply?: RestReply) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        lastActive = performance.now();
        if (err) reject(err);
        else resolve(reply!);
      };
      const r = request(
        {
          protocol: url.protocol,
          hostname: url.hostname,
          port: url.port,
          method: 'POST',
          path: `${basePath}/${path}`,
          headers,
          agent,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (e) => finish(unavailable(`response interrupted (${codeOf(e)})`, true, e)));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            const text = Buffer.concat(chunks).toString('utf8');
            const next = res.headers['upstash-sync-token'];
            if (typeof next === 'string') syncToken = next;
            if (status === 401 || status === 403) {
              finish(
                new StoreAuthError(`${name}: authentication failed (check UPSTASH_REDIS_REST_TOKEN)`, {
                  store: name,
                  ambiguous: false,
                }),
              );
              return;
            }
            let parsed: RestReply | undefined;
            try {
              parsed = JSON.parse(text) as RestReply;
            } catch {
              parsed = undefined;
            }
            if (status >= 200 && status < 300 && parsed !== undefined) {
              finish(undefined, base64 ? decodeReply(parsed) : parsed);
            } else if (status >= 400 && status < 500 && parsed && !Array.isArray(parsed) && parsed.error) {
              finish(new Error(redact(parsed.error, [token])));
            } else {
              // A 4xx without a Redis error (a proxy's 404, a 413) was refused; anything else may have run.
              const detail = parsed && !Array.isArray(parsed) && parsed.error ? `: ${parsed.error}` : '';
              const refused = status >= 400 && status < 500;
              finish(unavailable(`HTTP ${status}${redact(detail, [token])}`, !refused));
            }
          });
        },
      );
      const timer = setTimeout(() => {
        // Not sent if the connection was never made; otherwise the server may have run the command.
        const connected = r.socket ? !r.socket.connecting : false;
        finish(unavailable(`no reply within ${timeoutMs} ms`, connected));
        r.destroy();
      }, timeoutMs);
      r.on('error', (e) => {
        const code = codeOf(e);
        finish(unavailable(`unreachable (${code})`, !NOT_SENT.has(code), e));
      });
      r.end(body);
    });
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

/** Undoes `Upstash-Encoding: base64` (as @upstash/redis does): every string but a top-level "OK". */
function decodeReply(reply: RestReply): RestReply {
  if (Array.isArray(reply))
    return reply.map((r) => ({ result: decodeValue(r.result, true), error: r.error }));
  return { result: decodeValue(reply.result, true), error: reply.error };
}

function decodeValue(v: unknown, top: boolean): unknown {
  if (typeof v === 'string') return top && v === 'OK' ? v : Buffer.from(v, 'base64').toString('utf8');
  if (Array.isArray(v)) return v.map((x) => decodeValue(x, false));
  return v;
}
