import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Redis as Upstash } from '@upstash/redis';
import { Cluster, Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CLUSTER_SLOTS,
  freePort,
  livePids,
  RedisStartError,
  spawnedPids,
  startCluster,
  startRedis,
} from '../../dev/redis-server.js';
import { gatewayFor, useCluster, useMasters, useRedis } from '../support/servers.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Whether the process still runs. A zombie counts as gone: an orphan killed after its parent exited stays a
 * zombie until PID 1 reaps it, and some container inits never do.
 */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    expect((error as NodeJS.ErrnoException).code).toBe('ESRCH');
    return false;
  }
  try {
    return processState(pid) !== 'Z';
  } catch {
    return false; // reaped in between
  }
}

/** `T` while SIGSTOPped, `S`/`R` while running (field 3 of /proc/<pid>/stat). */
function processState(pid: number): string {
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] ?? '?';
}

function client(port: number, extra: { commandTimeout?: number } = {}): Redis {
  return new Redis({
    host: '127.0.0.1',
    port,
    protocol: 2,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    ...extra,
  });
}

/** Runs `fn` and returns the PIDs it spawned (every one of them, whether it still runs or not). */
async function pidsSpawnedBy(fn: () => Promise<unknown>): Promise<{ pids: number[]; error: unknown }> {
  const before = spawnedPids().length;
  const error = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  return { pids: spawnedPids().slice(before), error };
}

/** A plain TCP listener holding a port, so a redis-server cannot bind it. */
async function holdPort(): Promise<{ port: number; release: () => Promise<void> }> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return { port, release: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('cluster', () => {
  const cluster = useCluster();

  it('has 3 masters covering all 16384 slots, every node in state ok and agreeing on the map', async () => {
    expect(cluster().nodes).toHaveLength(3);
    const maps = await Promise.all(
      cluster().nodes.map(async (node) => {
        const c = client(node.port);
        try {
          const info = String(await c.call('CLUSTER', 'INFO'));
          expect(info).toContain('cluster_state:ok');
          expect(info).toContain(`cluster_slots_assigned:${CLUSTER_SLOTS}`);
          expect(info).toContain('cluster_known_nodes:3');
          expect(info).toContain('cluster_size:3');
          const slots = (await c.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
          return slots
            .map(([start, end, [host, port]]) => ({ start, end, owner: `${host}:${port}` }))
            .sort((a, b) => a.start - b.start);
        } finally {
          c.disconnect();
        }
      }),
    );
    const [first] = maps;
    for (const map of maps) expect(map).toEqual(first);
    expect(first?.reduce((n, r) => n + r.end - r.start + 1, 0)).toBe(CLUSTER_SLOTS);
    expect(new Set(first?.map((r) => r.owner))).toEqual(
      new Set(cluster().nodes.map((n) => `127.0.0.1:${n.port}`)),
    );
    // contiguous, no overlap
    for (const [i, range] of (first ?? []).entries())
      expect(range.start).toBe(i === 0 ? 0 : first![i - 1]!.end + 1);
  });

  it('serves an ioredis Cluster client across every master (MOVED followed)', async () => {
    const c = new Cluster(cluster().seeds, { redisOptions: { protocol: 2 } });
    try {
      const keys = Array.from({ length: 30 }, (_, i) => `harness-${i}`);
      for (const key of keys) await c.set(key, key);
      for (const key of keys) expect(await c.get(key)).toBe(key);
      const per = new Map<string, number>();
      for (const node of c.nodes('master')) per.set(`${node.options.port}`, Number(await node.dbsize()));
      expect(per.size).toBe(3);
      for (const count of per.values()) expect(count).toBeGreaterThan(0); // every master got some of the keys
    } finally {
      c.disconnect();
    }
  });

  // Last in this block: a restarted master reports cluster_state:fail for ~2 s (CLUSTER_WRITABLE_DELAY).
  it('a killed node restarts on its port with its node id and slots (nodes.conf is kept)', async () => {
    const node = cluster().nodes[2]!;
    const before = client(node.port);
    const id = String(await before.call('CLUSTER', 'MYID'));
    const slots = String(await before.call('CLUSTER', 'NODES'))
      .split('\n')
      .find((line) => line.includes('myself'))
      ?.split(' ')
      .slice(8);
    before.disconnect();
    const oldPid = node.pid;
    await node.kill();
    expect(alive(oldPid)).toBe(false);
    await node.restart();
    expect(node.pid).not.toBe(oldPid);
    const after = client(node.port);
    try {
      expect(String(await after.call('CLUSTER', 'MYID'))).toBe(id);
      const mine = String(await after.call('CLUSTER', 'NODES'))
        .split('\n')
        .find((line) => line.includes('myself'));
      expect(mine?.split(' ').slice(8)).toEqual(slots);
    } finally {
      after.disconnect();
    }
  });
});

describe('standalone process control', () => {
  const redis = useRedis();

  it('answers on its own port, with its own PID, on 127.0.0.1 only, persisting nothing', async () => {
    const c = client(redis().port);
    try {
      expect(await c.ping()).toBe('PONG');
      const info = String(await c.info('server'));
      expect(info).toContain(`process_id:${redis().pid}`);
      expect(info).toContain(`tcp_port:${redis().port}`);
      expect(await c.config('GET', 'bind')).toEqual(['bind', '127.0.0.1']);
      expect(await c.config('GET', 'save')).toEqual(['save', '']);
      expect(await c.config('GET', 'appendonly')).toEqual(['appendonly', 'no']);
      expect(redis().url).toBe(`redis://127.0.0.1:${redis().port}`);
      expect(livePids()).toContain(redis().pid);
    } finally {
      c.disconnect();
    }
  });

  it('pause() stops answering with the connection open; resume() answers again', async () => {
    const c = client(redis().port, { commandTimeout: 300 });
    try {
      await c.connect();
      redis().pause();
      expect(processState(redis().pid)).toBe('T');
      await expect(c.ping()).rejects.toThrow(/timed out/i);
      redis().resume();
      expect(processState(redis().pid)).not.toBe('T');
      await expect(c.ping()).resolves.toBe('PONG');
    } finally {
      redis().resume();
      c.disconnect();
    }
  });

  it('stop() on a paused server still ends it gracefully, well within the SIGKILL grace', async () => {
    const server = await startRedis();
    server.pause();
    const startedAt = performance.now();
    await server.stop();
    expect(performance.now() - startedAt).toBeLessThan(2000);
    expect(alive(server.pid)).toBe(false);
    expect(server.running).toBe(false);
  });

  it('kill() makes the PID disappear; restart() comes back on the same port with a new PID', async () => {
    const pid = redis().pid;
    const port = redis().port;
    await redis().kill();
    expect(alive(pid)).toBe(false);
    expect(redis().running).toBe(false);
    expect(livePids()).not.toContain(pid);
    await redis().restart();
    expect(redis().port).toBe(port);
    expect(redis().pid).not.toBe(pid);
    expect(alive(redis().pid)).toBe(true);
    const c = client(port);
    try {
      expect(await c.ping()).toBe('PONG');
    } finally {
      c.disconnect();
    }
  });

  it('a password goes through a config file: AUTH required, never in the command line', async () => {
    const password = 'pw with "quotes" and \\ spaces';
    const server = await startRedis({ password });
    try {
      const cmdline = readFileSync(`/proc/${server.pid}/cmdline`, 'utf8');
      expect(cmdline).not.toContain('quotes');
      const anonymous = client(server.port);
      anonymous.on('error', () => undefined); // the NOAUTH of its ready check, asserted through ping() below
      await expect(anonymous.ping()).rejects.toThrow(/NOAUTH/);
      anonymous.disconnect();
      const authed = new Redis({
        host: '127.0.0.1',
        port: server.port,
        password,
        protocol: 2,
        lazyConnect: true,
      });
      expect(await authed.ping()).toBe('PONG');
      authed.disconnect();
    } finally {
      await server.stop();
    }
  });
});

describe('masters and gatewayFor', () => {
  const masters = useMasters(5);
  const standalone = useRedis();

  it('useMasters(5): five independent servers, distinct ports and PIDs, no shared keyspace', async () => {
    const nodes = masters();
    expect(nodes).toHaveLength(5);
    expect(new Set(nodes.map((m) => m.port)).size).toBe(5);
    expect(new Set(nodes.map((m) => m.pid)).size).toBe(5);
    const clients = nodes.map((m) => client(m.port));
    try {
      await clients[0]?.set('only-on-first', '1');
      expect(await Promise.all(clients.map((c) => c.exists('only-on-first')))).toEqual([1, 0, 0, 0, 0]);
      for (const c of clients) expect(String(await c.info('cluster'))).toContain('cluster_enabled:0');
    } finally {
      for (const c of clients) c.disconnect();
    }
  });

  it('gatewayFor(server): { url, token } for @upstash/redis, one gateway per server', async () => {
    const endpoint = await gatewayFor(standalone());
    expect(Object.keys(endpoint).sort()).toEqual(['token', 'url']);
    expect(await gatewayFor(standalone())).toEqual(endpoint);
    expect((await gatewayFor(masters()[0]!)).url).not.toBe(endpoint.url);
    const rest = new Upstash({
      ...endpoint,
      automaticDeserialization: false,
      retry: false,
      enableTelemetry: false,
    });
    expect(await rest.set('via-rest', 'é✓')).toBe('OK');
    const direct = client(standalone().port);
    expect(await direct.get('via-rest')).toBe('é✓');
    direct.disconnect();
  });
});

describe('setup failures leave nothing running', () => {
  const held: { release: () => Promise<void> }[] = [];
  afterAll(async () => {
    await Promise.all(held.map((h) => h.release()));
  });

  it('startRedis on a port another redis holds fails (never mistakes the stranger for itself)', async () => {
    const stranger = await startRedis();
    try {
      const { pids, error } = await pidsSpawnedBy(() => startRedis({ port: stranger.port }));
      expect(error).toBeInstanceOf(RedisStartError);
      expect((error as RedisStartError).addressInUse).toBe(true);
      expect((error as Error).message).toMatch(/Address already in use/);
      expect(pids).toHaveLength(1);
      expect(pids.every((pid) => !alive(pid))).toBe(true);
      expect(alive(stranger.pid)).toBe(true);
    } finally {
      await stranger.stop();
    }
  });

  it('startCluster with one port taken: the nodes that did start are stopped, then it throws', async () => {
    const taken = await holdPort();
    held.push(taken);
    const ports = [await freePort(), taken.port, await freePort()];
    const liveBefore = livePids();
    const { pids, error } = await pidsSpawnedBy(() => startCluster({ ports }));
    expect(String(error)).toMatch(/Address already in use/);
    expect(pids.length).toBeGreaterThanOrEqual(3);
    expect(pids.filter(alive)).toEqual([]);
    expect(livePids().sort()).toEqual(liveBefore.sort());
  });

  it('startCluster failing after every node is up (cluster support off): all nodes stopped', async () => {
    const liveBefore = livePids();
    const { pids, error } = await pidsSpawnedBy(() =>
      startCluster({ masters: 3, args: ['--cluster-enabled', 'no'] }),
    );
    expect(String(error)).toMatch(/startCluster failed \(all 3 nodes stopped\).*cluster support disabled/);
    expect(pids).toHaveLength(3);
    expect(pids.filter(alive)).toEqual([]);
    expect(livePids().sort()).toEqual(liveBefore.sort());
  });
});

describe('process-level cleanup (a child Node process using dev/redis-server.ts)', () => {
  /** A child that starts a redis-server, prints its PID, then `action`s; resolves with PID and exit. */
  async function child(
    action: 'exit' | 'throw' | 'wait',
  ): Promise<{ redisPid: number; exited: Promise<unknown> }> {
    const code = [
      `const { startRedis } = await import(${JSON.stringify(`${root}dev/redis-server.ts`)});`,
      'const server = await startRedis();',
      'console.log(server.pid);',
      action === 'exit' ? 'process.exit(0);' : '',
      action === 'throw' ? 'throw new Error("setup failed");' : '',
      action === 'wait' ? 'setInterval(() => {}, 1000);' : '',
    ].join('\n');
    const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const exited = once(proc, 'exit');
    const [line] = (await once(proc.stdout, 'data')) as [Buffer];
    const redisPid = Number(line.toString().trim());
    expect(redisPid).toBeGreaterThan(0);
    if (action === 'wait') {
      expect(alive(redisPid)).toBe(true);
      proc.kill('SIGTERM');
    }
    return { redisPid, exited };
  }

  it.each([
    { action: 'exit', how: 'process.exit()' },
    { action: 'throw', how: 'an uncaught error' },
    { action: 'wait', how: 'SIGTERM' },
  ] as const)('the redis-server dies with its parent on $how', async ({ action }) => {
    const { redisPid, exited } = await child(action);
    await exited;
    expect(alive(redisPid)).toBe(false);
  });

  it('without redis-server on PATH, startRedis throws at once with an install hint', async () => {
    const code = [
      `const { startRedis } = await import(${JSON.stringify(`${root}dev/redis-server.ts`)});`,
      'const t = performance.now();',
      'try { await startRedis(); }',
      'catch (e) { console.log(JSON.stringify({ m: e.message, ms: performance.now() - t })); }',
    ].join('\n');
    const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: root,
      env: { ...process.env, PATH: '/nonexistent' },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const [line] = (await once(proc.stdout, 'data')) as [Buffer];
    await once(proc, 'exit');
    const { m, ms } = JSON.parse(line.toString()) as { m: string; ms: number };
    expect(m).toBe(
      'redis-server not found on PATH: install it with ' +
        '`sudo apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis`',
    );
    // At once: no waiting for the start timeout (10 s), with room for a loaded machine.
    expect(ms).toBeLessThan(2000);
  });
});
