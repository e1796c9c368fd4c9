import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { afterEach, describe, expect, it } from 'vitest';
import { createLock, fromEnv } from '../../layers/oncely/src/index.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every process below `pid`, from one `ps` listing. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const line of execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' }).split('\n')) {
    const [child, parent] = line.trim().split(/\s+/).map(Number);
    if (!child || parent === undefined) continue;
    children.set(parent, [...(children.get(parent) ?? []), child]);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** Whether anything accepts a TCP connection on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Polls `check` every 100 ms until it holds or `withinMs` passes; returns its last answer. */
async function eventually(check: () => boolean | Promise<boolean>, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Started {
  npm: ChildProcess;
  output: () => string;
  env: Record<string, string>;
  ports: number[];
  tree: number[];
}

/** `npm start` as a user runs it (free ports), in a process group of its own so a failed test can clean up. */
async function npmStart(): Promise<Started> {
  const npm = spawn('npm', ['start'], {
    cwd: root,
    env: {
      ...process.env,
      ONCELY_GATEWAY_PORT: '0',
      ONCELY_HTTP_PORT: '0',
      ONCELY_LAMBDA_PORT: '0',
      npm_config_update_notifier: 'false',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  started.push(npm);
  let out = '';
  npm.stdout!.on('data', (d) => {
    out += d;
  });
  npm.stderr!.on('data', (d) => {
    out += d;
  });
  // Started on a machine shared with other test runs: a generous bound, left as soon as it is ready.
  await eventually(() => out.includes('ready.') || npm.exitCode !== null, 90_000);
  expect(out).toContain('ready.');
  const env = Object.fromEntries([...out.matchAll(/^export (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  const ports = [
    new URL(env.UPSTASH_REDIS_REST_URL!).port,
    new URL(env.ONCELY_REDIS_URL!).port,
    env.ONCELY_HTTP_PORT,
    env.ONCELY_LAMBDA_PORT,
  ].map(Number);
  const tree = descendants(npm.pid!);
  trees.push(tree);
  return { npm, output: () => out, env, ports, tree };
}

/** Signals npm's own PID (not its group), then waits for npm to exit and for everything it started to go. */
async function stopWith(s: Started, signal: NodeJS.Signals) {
  const exited = once(s.npm, 'exit');
  process.kill(s.npm.pid!, signal);
  await exited;
  // serverless-offline gets a grace period before SIGKILL (dev/start.ts): wait on the processes, not a clock.
  const gone = await eventually(() => s.tree.every((pid) => !alive(pid)), 30_000);
  const left = s.tree.filter(alive);
  const open = [];
  for (const port of s.ports) if (await listening(port)) open.push(port);
  return { gone, left, open };
}

// What a failed test leaves is killed by PID: npm, and every process that was below it once it was ready.
const started: ChildProcess[] = [];
const trees: number[][] = [];
afterEach(() => {
  for (const pid of trees.splice(0).flat()) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const npm of started.splice(0)) if (npm.pid && alive(npm.pid)) process.kill(npm.pid, 'SIGKILL');
});

describe('npm start (the local stack)', () => {
  it('starts redis-server, the gateway and serverless offline, prints working endpoints; SIGTERM to npm stops it all', async () => {
    const s = await npmStart();
    const out = s.output();
    const redisPid = Number(/redis-server .*\(pid (\d+)\)/.exec(out)?.[1]);
    const offlinePid = Number(/serverless offline +\(pid (\d+)\)/.exec(out)?.[1]);
    expect(alive(redisPid)).toBe(true);
    expect(alive(offlinePid)).toBe(true);
    // The tree below npm holds them all (no launcher that outlives a signal).
    expect(s.tree).toContain(redisPid);
    expect(s.tree).toContain(offlinePid);

    const rest = fromEnv({
      UPSTASH_REDIS_REST_URL: s.env.UPSTASH_REDIS_REST_URL,
      UPSTASH_REDIS_REST_TOKEN: s.env.UPSTASH_REDIS_REST_TOKEN,
    });
    const tcp = fromEnv({ ONCELY_REDIS_URL: s.env.ONCELY_REDIS_URL });
    const lease = await createLock(rest).tryAcquire('start-test', { ttlMs: 5000 });
    expect(lease?.fence).toBeGreaterThan(0);
    expect(await createLock(tcp).tryAcquire('start-test', { ttlMs: 5000 })).toBeNull(); // same server
    await tcp.close();

    // serverless offline answers on the printed ports: HTTP routes, and Lambda invokes through the SDK.
    const httpUrl = `http://127.0.0.1:${s.env.ONCELY_HTTP_PORT}`;
    const bad = await fetch(`${httpUrl}/dispatch`, { method: 'POST', body: '{}' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: 'items must be an array of 1 to 1000 work items' });
    const lambda = new LambdaClient({
      endpoint: `http://127.0.0.1:${s.env.ONCELY_LAMBDA_PORT}`,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const invoked = await lambda.send(
      new InvokeCommand({ FunctionName: 'oncely-local-dispatch', Payload: JSON.stringify({ body: '[]' }) }),
    );
    expect(JSON.parse(Buffer.from(invoked.Payload!).toString())).toMatchObject({ statusCode: 400 });
    lambda.destroy();

    const stopped = await stopWith(s, 'SIGTERM');
    expect(s.output()).toContain('stopped');
    expect(stopped).toEqual({ gone: true, left: [], open: [] });
  }, 180_000);

  it('SIGINT to npm alone (not its process group, as a process manager sends it) stops it all too', async () => {
    const s = await npmStart();
    expect(s.tree.length).toBeGreaterThan(2);
    expect(await stopWith(s, 'SIGINT')).toEqual({ gone: true, left: [], open: [] });
    expect(s.output()).toContain('SIGINT: stopping');
  }, 180_000);
});
