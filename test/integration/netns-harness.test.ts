/**
 * The partition harness itself (test/support/netns.ts, delay-proxy.ts): a cut cuts what it says and nothing
 * else, one direction means one direction, every namespace goes away (also a killed run's), and the delay
 * proxy adds the round trip it promises without reordering a byte.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { startRedis } from '../../dev/redis-server.js';
import { startDelayProxy } from '../support/delay-proxy.js';
import { Network, netnsUnavailable, removeStale } from '../support/netns.js';

const unavailable = netnsUnavailable();
// Every machine this suite runs on (CI and the sessions) runs as root with iproute2 and iptables: without them
// the file fails, naming what is missing, rather than skip.
if (unavailable) throw new Error(`netns-harness.test.ts needs network namespaces: ${unavailable}`);

const run = promisify(execFile);
const namespacesOf = (k: number) =>
  execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.startsWith(`oncely-${k}-`));
const client = (host: string, port: number) =>
  new Redis({
    host,
    port,
    protocol: 2,
    commandTimeout: 300,
    maxRetriesPerRequest: 0,
    retryStrategy: () => 50,
  });
/** A redis-cli command run inside `netns`; its reply, or 'unreachable' after a second. */
const cliIn = async (netns: string, host: string, port: number, ...args: string[]) =>
  run('ip', ['netns', 'exec', netns, 'timeout', '1', 'redis-cli', '-h', host, '-p', String(port), ...args])
    .then(({ stdout }) => stdout.trim())
    .catch(() => 'unreachable');
/** PING from inside `netns`, true when it answered within a second. */
const pingFrom = async (netns: string, host: string, port: number) =>
  (await cliIn(netns, host, port, 'PING')) === 'PONG';

describe('network namespaces', () => {
  const networks: Network[] = [];
  const clients: Redis[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.disconnect();
    await Promise.all(networks.splice(0).map((n) => n.destroy()));
  });
  const network = async () => {
    const net = await Network.create();
    networks.push(net);
    return net;
  };

  it('drop() loses one direction only: requests still arrive when replies are dropped', async () => {
    const net = await network();
    const server = await net.startRedis('m1');
    const m1 = net.party('m1');
    const c = client(server.host, server.port);
    clients.push(c);
    await c.ping();

    // Looked at from inside m1's namespace (redis-cli there), which no rule touches.
    const inM1 = (...args: string[]) => cliIn(m1.netns!, server.host, server.port, ...args);
    await net.drop(m1, net.here); // replies lost
    await expect(c.set('replies-dropped', '1')).rejects.toThrow(/timed out/);
    expect(await inM1('GET', 'replies-dropped')).toBe('1');
    await net.heal();

    await net.drop(net.here, m1); // requests lost
    await expect(c.set('requests-dropped', '1')).rejects.toThrow(/timed out/);
    expect(await inM1('EXISTS', 'requests-dropped')).toBe('0');
    await net.heal();
    // TCP retransmits the request once the rule is gone: a drop is a delay to TCP, not a reset.
    await expect.poll(() => inM1('EXISTS', 'requests-dropped'), { timeout: 10_000 }).toBe('1');
  });

  it('cut() separates two parties and nobody else; down() separates a party from everyone', async () => {
    const net = await network();
    const [a, b] = await Promise.all([net.startRedis('a'), net.startRedis('b')]);
    const [pa, pb] = [net.party('a'), net.party('b')];
    expect(await pingFrom(pa.netns!, b.host, b.port)).toBe(true);
    await net.cut(pa, pb);
    expect(await pingFrom(pa.netns!, b.host, b.port)).toBe(false);
    expect(await pingFrom(pb.netns!, a.host, a.port)).toBe(false);
    const c = client(b.host, b.port);
    clients.push(c);
    expect(await c.ping()).toBe('PONG'); // here still reaches b
    await net.heal();
    expect(await pingFrom(pa.netns!, b.host, b.port)).toBe(true);

    await net.down(pb);
    expect(await pingFrom(pa.netns!, b.host, b.port)).toBe(false);
    await expect(c.ping()).rejects.toThrow();
    await net.up(pb);
    expect(await pingFrom(pa.netns!, b.host, b.port)).toBe(true);
  });

  it('destroy() removes every namespace, link and owner file, with servers and rules in place', async () => {
    const net = await network();
    const server = await net.startRedis('m1');
    await net.cut(net.party('m1'), net.here);
    expect(namespacesOf(net.k)).toHaveLength(2); // the switch and m1
    await net.destroy();
    expect(namespacesOf(net.k)).toEqual([]);
    expect(execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' })).not.toContain(`onc${net.k}-here`);
    expect(existsSync(`/tmp/oncely-netns/${net.k}.owner`)).toBe(false);
    expect(server.running).toBe(false);
  });

  it("a killed run's namespaces are removed when the next network is made", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'oncely-netns-test-'));
    const script = path.join(dir, 'killed.mts');
    const netns = fileURLToPath(new URL('../support/netns.ts', import.meta.url));
    writeFileSync(
      script,
      `import { Network } from ${JSON.stringify(netns)};\n` +
        'const net = await Network.create();\nawait net.add("orphan");\n' +
        'process.stdout.write(String(net.k) + "\\n");\nsetInterval(() => {}, 1000);\n',
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
    const k = Number(chunk.toString().trim());
    expect(namespacesOf(k)).toHaveLength(2); // the switch and the orphan, while their owner runs
    child.kill('SIGKILL'); // no exit hook runs
    await once(child, 'exit');
    rmSync(dir, { recursive: true, force: true });
    // (Another test file's Network.create() may get there first: either way, they are gone.)
    removeStale();
    expect(namespacesOf(k)).toEqual([]);
    expect(existsSync(`/tmp/oncely-netns/${k}.owner`)).toBe(false);
  });
});

describe('delay proxy', () => {
  it('adds a round trip within its bounds and keeps the byte order', async () => {
    const server = await startRedis();
    const proxy = await startDelayProxy({ target: server, minRttMs: 2, maxRttMs: 6 });
    const c = new Redis({ host: proxy.host, port: proxy.port, protocol: 2 });
    try {
      await c.ping();
      const rtts: number[] = [];
      for (let i = 0; i < 50; i++) {
        const t0 = performance.now();
        await c.ping();
        rtts.push(performance.now() - t0);
      }
      rtts.sort((x, y) => x - y);
      // Never faster than the minimum (a proxy that forwards at once fails this); the median below the max
      // plus room for a busy machine's timers.
      expect(rtts[0]!).toBeGreaterThanOrEqual(2);
      expect(rtts[25]!).toBeLessThan(6 + 20);
      // 2,000 pipelined INCRs, each chunk held a different time: replies must still come back 1..2000.
      const pipeline = c.pipeline();
      for (let i = 0; i < 2000; i++) pipeline.incr('order');
      const replies = (await pipeline.exec())!.map(([, value]) => value);
      expect(replies).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
      console.log(
        `[delay-proxy] ping RTT min ${rtts[0]!.toFixed(2)} / median ${rtts[25]!.toFixed(2)} / max ${rtts[49]!.toFixed(2)} ms for 2-6 ms asked`,
      );
    } finally {
      c.disconnect();
      await proxy.close();
      await server.stop();
    }
  });
});
