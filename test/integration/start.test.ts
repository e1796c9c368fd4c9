import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
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

describe('npm start (the local stack)', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });

  it('starts redis-server and the gateway, prints working env vars, and cleans up on Ctrl-C', async () => {
    child = spawn(process.execPath, ['--import', 'tsx', 'dev/start.ts'], {
      cwd: root,
      env: { ...process.env, ONCELY_GATEWAY_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
    });
    child.stderr!.on('data', (d) => {
      out += d;
    });
    const deadline = Date.now() + 20_000;
    while (!out.includes('ready.') && Date.now() < deadline && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(out).toContain('ready.');
    const env = Object.fromEntries([...out.matchAll(/^export (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const pid = Number(/\(pid (\d+)\)/.exec(out)?.[1]);
    expect(alive(pid)).toBe(true);

    const rest = fromEnv({
      UPSTASH_REDIS_REST_URL: env.UPSTASH_REDIS_REST_URL,
      UPSTASH_REDIS_REST_TOKEN: env.UPSTASH_REDIS_REST_TOKEN,
    });
    const tcp = fromEnv({ ONCELY_REDIS_URL: env.ONCELY_REDIS_URL });
    const lease = await createLock(rest).tryAcquire('start-test', { ttlMs: 5000 });
    expect(lease?.fence).toBe(1);
    expect(await createLock(tcp).tryAcquire('start-test', { ttlMs: 5000 })).toBeNull(); // same server
    await tcp.close();

    child.kill('SIGINT');
    await once(child, 'exit');
    expect(out).toContain('stopped');
    expect(alive(pid)).toBe(false);
  });
});
