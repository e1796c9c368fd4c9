/**
 * `npm start`: the local stack on embedded defaults — a redis-server on a free port, the Upstash-compatible REST
 * gateway in front of it, and `serverless offline --stage local` running the functions against the gateway —
 * then prints the endpoints and the environment to use, and waits. Ctrl-C, SIGINT or SIGTERM (to this process or
 * to `npm start`'s own PID, as process managers, IDE stop buttons and containers send) stops all of it.
 *
 * The npm script is `exec node --import tsx dev/start.ts`: `exec` replaces npm's `sh -c` with this process, so the
 * signals npm forwards to its child reach us (a shell in between dies of SIGTERM without passing it on, and waits
 * out SIGINT, leaving the stack running); no tsx launcher process in between either. Should the parent still go
 * away without a signal (npm killed with SIGKILL), the stack stops when this process sees it orphaned.
 *
 *   ONCELY_GATEWAY_PORT  gateway port (default 8079, or a free one when taken)
 *   ONCELY_HTTP_PORT     serverless-offline HTTP port (default 3000, or a free one when taken)
 *   ONCELY_LAMBDA_PORT   serverless-offline Lambda invoke port (default 3002, or a free one when taken)
 *   ONCELY_LOCAL_TOKEN   the gateway's bearer token (default `oncely-local-token`)
 *   GITHUB_WEBHOOK_SECRET / STRIPE_WEBHOOK_SECRET / STANDARD_WEBHOOK_SECRET
 *                        the webhook function's secrets (defaults: LOCAL_WEBHOOK_SECRETS)
 *
 * `startStack()` is the same stack for the demo and the end-to-end tests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { realpathSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Gateway, startGateway } from './gateway.js';
import { type RedisProcess, startRedis } from './redis-server.js';

export const LOCAL_TOKEN = 'oncely-local-token';
/** The webhook secrets of the local stage (also the defaults in serverless.yml). Not secret: local only. */
export const LOCAL_WEBHOOK_SECRETS = Object.freeze({
  github: 'oncely-local-github-secret',
  stripe: 'whsec_oncely_local_stripe_secret',
  standard: 'whsec_b25jZWx5LWxvY2FsLXN0YW5kYXJkLXdlYmhvb2tz',
});
export const DEFAULT_PORTS = Object.freeze({ gateway: 8079, http: 3000, lambda: 3002 });

const root = fileURLToPath(new URL('..', import.meta.url));
const serverlessBin = join(root, 'node_modules/serverless/bin/serverless.js');
const OFFLINE_READY_TIMEOUT_MS = 60_000;
/**
 * The functions' store bound in the local stack (ONCELY_TIMEOUT_MS, unless set): the stack shares its machine
 * with tests and tools, where the REST gateway can take seconds to answer. With the 2 s default, the demo on a
 * machine at load average 25 saw store timeouts after a side effect had landed, and the retries then ran some
 * ids twice (fail closed means "the source retries", which repeats an applied effect).
 */
const LOCAL_STORE_TIMEOUT_MS = 15_000;
const OFFLINE_STOP_GRACE_MS = 5_000;
/** How often `npm start` checks that its parent (npm) is still there. */
const PARENT_POLL_MS = 500;
const OUTPUT_TAIL_CHARS = 8_192;

export interface StackOptions {
  /** Ports; 0 = a free one. A default port that is taken is replaced by a free one. */
  gatewayPort?: number;
  httpPort?: number;
  lambdaPort?: number;
  token?: string;
  webhookSecrets?: { github: string; stripe: string; standard: string };
  /** serverless-offline's output, line by line (default: dropped, but kept for error messages). */
  onOutput?: (text: string) => void;
}

export interface Stack {
  readonly redis: RedisProcess;
  readonly gateway: Gateway;
  /** serverless-offline: `http://127.0.0.1:<httpPort>` (HTTP API routes, no stage prefix). */
  readonly httpUrl: string;
  /** serverless-offline's Lambda invoke endpoint, for `new LambdaClient({ endpoint })`. */
  readonly lambdaEndpoint: string;
  readonly offlinePid: number;
  readonly webhookSecrets: { github: string; stripe: string; standard: string };
  /** Everything serverless-offline printed so far (the tail). */
  output(): string;
  /** Stops serverless-offline (its whole process group), the gateway and redis-server. Idempotent. */
  stop(): Promise<void>;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** `wanted` when it is free; otherwise (or for 0) a free port other than `avoid`. */
async function pickPort(wanted: number, avoid: number[]): Promise<number> {
  if (wanted !== 0 && !avoid.includes(wanted) && (await portIsFree(wanted))) return wanted;
  for (;;) {
    const port = await freePort();
    if (!avoid.includes(port)) return port;
  }
}

function envPort(name: string, fallback: number): number {
  const text = process.env[name];
  return text === undefined || text === '' ? fallback : Number(text);
}

/** Process groups of serverless-offline children still running: killed if this process exits first. */
const liveGroups = new Set<number>();
process.on('exit', () => {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stopGroup(child: ChildProcess): Promise<void> {
  const pid = child.pid!;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // gone
    }
  };
  signal('SIGINT');
  const timer = setTimeout(() => signal('SIGKILL'), OFFLINE_STOP_GRACE_MS);
  await exited(child);
  clearTimeout(timer);
  signal('SIGKILL'); // anything the group left behind (esbuild's service process)
  liveGroups.delete(pid);
}

/** redis-server, the REST gateway and `serverless offline --stage local`, each on its own port. */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const token = options.token ?? LOCAL_TOKEN;
  const webhookSecrets = options.webhookSecrets ?? LOCAL_WEBHOOK_SECRETS;
  const redis = await startRedis();
  let gateway: Gateway | undefined;
  let child: ChildProcess | undefined;
  const workFolder = `.esbuild/stack-${process.pid}-${Date.now()}`;
  let output = '';

  const stopAll = async () => {
    if (child) await stopGroup(child);
    rmSync(join(root, workFolder), { recursive: true, force: true });
    await gateway?.close().catch(() => undefined);
    await redis.stop().catch(() => undefined);
  };

  try {
    const gatewayPort = await pickPort(options.gatewayPort ?? DEFAULT_PORTS.gateway, [redis.port]);
    gateway = await startGateway({ redis: { host: redis.host, port: redis.port }, token, port: gatewayPort });
    const httpPort = await pickPort(options.httpPort ?? DEFAULT_PORTS.http, [redis.port, gateway.port]);
    const lambdaPort = await pickPort(options.lambdaPort ?? DEFAULT_PORTS.lambda, [
      redis.port,
      gateway.port,
      httpPort,
    ]);
    const lambdaEndpoint = `http://127.0.0.1:${lambdaPort}`;

    // serverless-offline hands each handler the variables serverless.yml declares plus every AWS_* of this
    // environment: fake credentials (the local stack never talks to AWS), and the Lambda endpoint, so
    // dispatch's LambdaClient invokes the worker on this serverless-offline.
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_REGION: 'us-east-1',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_ENDPOINT_URL_LAMBDA: lambdaEndpoint,
      UPSTASH_REDIS_REST_URL: gateway.url,
      UPSTASH_REDIS_REST_TOKEN: token,
      GITHUB_WEBHOOK_SECRET: webhookSecrets.github,
      STRIPE_WEBHOOK_SECRET: webhookSecrets.stripe,
      STANDARD_WEBHOOK_SECRET: webhookSecrets.standard,
      ONCELY_TIMEOUT_MS: process.env.ONCELY_TIMEOUT_MS || String(LOCAL_STORE_TIMEOUT_MS),
      ONCELY_HTTP_PORT: String(httpPort),
      ONCELY_LAMBDA_PORT: String(lambdaPort),
      ONCELY_ESBUILD_DIR: workFolder,
    };
    const started = spawn(process.execPath, [serverlessBin, 'offline', '--stage', 'local'], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group: stopped as a whole, never by a terminal's Ctrl-C alone
    });
    child = started;
    liveGroups.add(started.pid!);
    let ready = false;
    const onData = (chunk: Buffer) => {
      const text = chunk.toString();
      output = (output + text).slice(-OUTPUT_TAIL_CHARS);
      if (!ready && /Server ready/.test(output)) ready = true;
      options.onOutput?.(text);
    };
    started.stdout!.on('data', onData);
    started.stderr!.on('data', onData);

    const deadline = Date.now() + OFFLINE_READY_TIMEOUT_MS;
    while (!ready) {
      if (started.exitCode !== null || started.signalCode !== null) {
        throw new Error(`serverless offline exited (${started.exitCode ?? started.signalCode}):\n${output}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`serverless offline not ready within ${OFFLINE_READY_TIMEOUT_MS} ms:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }

    let stopping: Promise<void> | undefined;
    return {
      redis,
      gateway,
      httpUrl: `http://127.0.0.1:${httpPort}`,
      lambdaEndpoint,
      offlinePid: started.pid!,
      webhookSecrets,
      output: () => output,
      stop: () => {
        stopping ??= stopAll();
        return stopping;
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function main(): Promise<void> {
  const secret = (name: string, fallback: string) => process.env[name] || fallback;
  let stack: Stack | undefined;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping serverless-offline, the gateway and redis-server`);
    await stack?.stop().catch(() => undefined);
    console.log('stopped');
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void stop(signal));
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) void stop('parent process gone');
  }, PARENT_POLL_MS).unref();

  console.log('starting redis-server, the REST gateway and serverless offline --stage local ...');
  stack = await startStack({
    gatewayPort: envPort('ONCELY_GATEWAY_PORT', DEFAULT_PORTS.gateway),
    httpPort: envPort('ONCELY_HTTP_PORT', DEFAULT_PORTS.http),
    lambdaPort: envPort('ONCELY_LAMBDA_PORT', DEFAULT_PORTS.lambda),
    token: process.env.ONCELY_LOCAL_TOKEN || LOCAL_TOKEN,
    webhookSecrets: {
      github: secret('GITHUB_WEBHOOK_SECRET', LOCAL_WEBHOOK_SECRETS.github),
      stripe: secret('STRIPE_WEBHOOK_SECRET', LOCAL_WEBHOOK_SECRETS.stripe),
      standard: secret('STANDARD_WEBHOOK_SECRET', LOCAL_WEBHOOK_SECRETS.standard),
    },
    // Request logs from here on; the startup banner is summarised below.
    onOutput: (text) => {
      if (stack) process.stdout.write(text);
    },
  });
  if (stopping) return;
  const { redis, gateway, httpUrl, lambdaEndpoint } = stack;
  const port = (url: string) => new URL(url).port;

  console.log(`oncely local stack
  redis-server        ${redis.url}  (pid ${redis.pid})
  REST gateway        ${gateway.url}  (Upstash-compatible)
  serverless offline  (pid ${stack.offlinePid})
    HTTP              ${httpUrl}   POST /webhooks/{github|stripe|standard}, POST /dispatch
    Lambda            ${lambdaEndpoint}   functions oncely-local-{webhook,tick,dispatch,worker,queue}

Use it from another shell (REST, as in Lambda with Upstash):
export UPSTASH_REDIS_REST_URL=${gateway.url}
export UPSTASH_REDIS_REST_TOKEN=${gateway.token}
export ONCELY_HTTP_PORT=${port(httpUrl)}
export ONCELY_LAMBDA_PORT=${port(lambdaEndpoint)}

or over TCP:
export ONCELY_REDIS_URL=${redis.url}

Try: npm run demo
     AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws lambda invoke --region us-east-1 \\
       --endpoint-url ${lambdaEndpoint} --function-name oncely-local-worker \\
       --payload fileb://functions/worker/event.json /tmp/oncely-worker.json && cat /tmp/oncely-worker.json

ready. Ctrl-C stops everything.`);
}

const entry = process.argv[1];
if (entry && realpathSync(entry) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error('npm start failed:', err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
