import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
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
  let offlinePid = 0;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    if (offlinePid && alive(offlinePid)) process.kill(-offlinePid, 'SIGKILL');
  });

  it('starts redis-server, the gateway and serverless offline, prints working endpoints, and cleans up on Ctrl-C', async () => {
    child = spawn(process.execPath, ['--import', 'tsx', 'dev/start.ts'], {
      cwd: root,
      env: { ...process.env, ONCELY_GATEWAY_PORT: '0', ONCELY_HTTP_PORT: '0', ONCELY_LAMBDA_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
    });
    child.stderr!.on('data', (d) => {
      out += d;
    });
    const deadline = Date.now() + 60_000;
    while (!out.includes('ready.') && Date.now() < deadline && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(out).toContain('ready.');
    const env = Object.fromEntries([...out.matchAll(/^export (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const redisPid = Number(/redis-server .*\(pid (\d+)\)/.exec(out)?.[1]);
    offlinePid = Number(/serverless offline +\(pid (\d+)\)/.exec(out)?.[1]);
    expect(alive(redisPid)).toBe(true);
    expect(alive(offlinePid)).toBe(true);

    const rest = fromEnv({
      UPSTASH_REDIS_REST_URL: env.UPSTASH_REDIS_REST_URL,
      UPSTASH_REDIS_REST_TOKEN: env.UPSTASH_REDIS_REST_TOKEN,
    });
    const tcp = fromEnv({ ONCELY_REDIS_URL: env.ONCELY_REDIS_URL });
    const lease = await createLock(rest).tryAcquire('start-test', { ttlMs: 5000 });
    expect(lease?.fence).toBeGreaterThan(0);
    expect(await createLock(tcp).tryAcquire('start-test', { ttlMs: 5000 })).toBeNull(); // same server
    await tcp.close();

    // serverless offline answers on the printed ports: HTTP routes, and Lambda invokes through the SDK.
    const httpUrl = `http://127.0.0.1:${env.ONCELY_HTTP_PORT}`;
    const bad = await fetch(`${httpUrl}/dispatch`, { method: 'POST', body: '{}' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: 'items must be an array of 1 to 1000 work items' });
    const lambda = new LambdaClient({
      endpoint: `http://127.0.0.1:${env.ONCELY_LAMBDA_PORT}`,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const invoked = await lambda.send(
      new InvokeCommand({ FunctionName: 'oncely-local-dispatch', Payload: JSON.stringify({ body: '[]' }) }),
    );
    expect(JSON.parse(Buffer.from(invoked.Payload!).toString())).toMatchObject({ statusCode: 400 });
    lambda.destroy();

    child.kill('SIGINT');
    await once(child, 'exit');
    expect(out).toContain('stopped');
    expect(alive(redisPid)).toBe(false);
    expect(alive(offlinePid)).toBe(false);
    await expect(fetch(`${httpUrl}/dispatch`, { method: 'POST', body: '{}' })).rejects.toThrow();
  }, 90_000);
});
