/**
 * TLS on every transport, as ElastiCache (in-transit encryption), MemoryDB and Upstash require: standalone
 * and a 3-master cluster (`tls-cluster yes`: the bus and the slot map are TLS too) over `tls`, and REST over
 * https to a gateway that reaches redis over TLS. Certificates come from a CA made here (test/support/certs.ts);
 * a wrong CA, an expired certificate and plain text to a TLS port each fail with an error that names the
 * problem. (tls-auth.test.ts covers a standalone server with an ACL user.)
 *
 * Servers sit in network namespaces (test/support/netns.ts), so every node can use the same TLS port and the
 * certificates name their addresses; needs root like partitions.test.ts.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedisCluster, RedisProcess } from '../../dev/redis-server.js';
import {
  createLock,
  type Store,
  StoreUnavailableError,
  upstashStore,
} from '../../layers/oncely/src/index.js';
import { clusterStore, redisStore } from '../../layers/oncely/src/ioredis.js';
import { makeCertificates, type TestCertificates, tlsArgs } from '../support/certs.js';
import { type NetnsGateway, netnsUnavailable, useNetwork } from '../support/netns.js';

const unavailable = netnsUnavailable();
// Every machine this suite runs on (CI and the sessions) runs as root with iproute2 and iptables: without them
// the file fails, naming what is missing, rather than skip.
if (unavailable) throw new Error(`tls-transports.test.ts needs network namespaces: ${unavailable}`);

const TLS_PORT = 6390;
const clientScript = fileURLToPath(new URL('../support/netns-client.ts', import.meta.url));

/** The message of an error and of each cause under it. */
const chain = (error: unknown): string => {
  const out: string[] = [];
  for (let e = error as Error | undefined; e; e = e.cause as Error | undefined) out.push(e.message);
  return out.join(' <- ');
};

describe('TLS on every transport', () => {
  const net = useNetwork();
  let certs: TestCertificates;
  let server: RedisProcess;
  let expired: RedisProcess;
  let cluster: RedisCluster;
  let gateway: NetnsGateway;
  const stores: Store[] = [];
  const tracked = <S extends Store>(s: S): S => {
    stores.push(s);
    return s;
  };

  beforeAll(async () => {
    // Every party first, so the certificate can name every address.
    const names = ['s1', 'expired', 'n0', 'n1', 'n2', 'behind', 'gw'];
    const parties = await Promise.all(names.map((name) => net().add(name)));
    certs = makeCertificates(parties.map((p) => p.ip));
    let behind: RedisProcess;
    [server, expired, behind, cluster] = await Promise.all([
      net().startRedis('s1', { args: tlsArgs(certs, TLS_PORT) }),
      net().startRedis('expired', { args: tlsArgs(certs, TLS_PORT, certs.files.expiredCert) }),
      net().startRedis('behind', { args: tlsArgs(certs, TLS_PORT) }),
      net().startCluster({
        masters: 3,
        args: [...tlsArgs(certs, TLS_PORT), '--tls-cluster', 'yes', '--tls-replication', 'yes'],
      }),
    ]);
    gateway = await net().startGateway(
      'gw',
      { host: behind.host, port: TLS_PORT },
      {
        ONCELY_GATEWAY_REDIS_CA: certs.files.ca,
        ONCELY_GATEWAY_CERT: certs.files.cert,
        ONCELY_GATEWAY_KEY: certs.files.key,
      },
    );
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close().catch(() => undefined)));
    certs?.remove();
  });

  const standalone = (tls: unknown, host = server.host, timeoutMs = 1000) =>
    tracked(redisStore({ host, port: TLS_PORT, timeoutMs, ...(tls === undefined ? {} : { tls }) } as never));

  it('standalone: a lock over TLS, trusting the CA', async () => {
    const lease = await createLock(standalone({ ca: certs.ca })).tryAcquire('tls-standalone', {
      ttlMs: 5000,
    });
    expect(lease?.fence).toBeGreaterThan(0);
    expect(await lease?.release()).toBe('released');
  });

  it('cluster: locks on every master over TLS (the slot map names the TLS port)', async () => {
    const store = tracked(
      clusterStore({ nodes: [{ host: cluster.masters[0]!.host, port: TLS_PORT }], tls: { ca: certs.ca } }),
    );
    const lock = createLock(store);
    // Keys in the three masters' slot ranges: {a}, {b}, {c} hash to 15495, 3300, 7365.
    for (const key of ['{a}tls', '{b}tls', '{c}tls']) {
      const lease = await lock.tryAcquire(key, { ttlMs: 5000 });
      expect(lease?.fence).toBeGreaterThan(0);
      expect(await lease?.release()).toBe('released');
    }
  });

  it('REST: https to the gateway, the gateway to redis over TLS', async () => {
    expect(gateway.url).toMatch(/^https:\/\//);
    // A Lambda trusts a private CA through NODE_EXTRA_CA_CERTS (Upstash's certificates are public).
    const child = net().spawn(
      await net().add('lambda'),
      ['--import', 'tsx', clientScript, '--mode', 'hold', '--rest', gateway.url, '--key', 'tls-rest'],
      { ONCELY_GATEWAY_TOKEN: gateway.token, NODE_EXTRA_CA_CERTS: certs.files.ca },
    );
    try {
      let output = '';
      const acquired = await new Promise<{ fence: number }>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no lock over https within 15 s: ${output}`)),
          15_000,
        );
        const onData = (chunk: Buffer) => {
          output += chunk.toString('utf8');
          const line = output.split('\n').find((l) => l.includes('"acquired"'));
          if (line) {
            clearTimeout(timer);
            resolve(JSON.parse(line) as { fence: number });
          }
        };
        child.stdout!.on('data', onData);
        child.stderr!.on('data', onData);
      });
      expect(acquired.fence).toBeGreaterThan(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('REST: a client that does not trust the gateway certificate gets an error naming it', async () => {
    const store = tracked(upstashStore({ url: gateway.url, token: gateway.token, timeoutMs: 2000 }));
    const error = await createLock(store)
      .tryAcquire('tls-rest-untrusted', { ttlMs: 5000 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(chain(error)).toMatch(/certificate/i);
    expect(chain(error)).not.toContain(gateway.token);
  });

  it('REST: a gateway that does not trust redis fails to start, naming the certificate', async () => {
    await expect(
      net().startGateway(
        'gwbad',
        { host: server.host, port: TLS_PORT },
        { ONCELY_GATEWAY_REDIS_CA: certs.files.otherCa },
      ),
    ).rejects.toThrow(/certificate/i);
  });

  it.each([
    ['a wrong CA', () => ({ host: server.host, tls: { ca: certs.otherCa } }), /self-signed certificate/],
    [
      'an expired certificate',
      () => ({ host: expired.host, tls: { ca: certs.ca } }),
      /certificate has expired/,
    ],
  ])(
    'standalone, %s: a StoreUnavailableError naming the certificate problem, at once',
    async (_, setup, text) => {
      const { host, tls } = setup();
      const t0 = performance.now();
      const error = await createLock(standalone(tls, host))
        .tryAcquire('tls-bad', { ttlMs: 5000 })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(chain(error)).toMatch(text);
      expect(performance.now() - t0).toBeLessThan(5000);
    },
  );

  // ioredis' Cluster reports a failed TLS handshake only as "Connection is closed.": the store makes a handshake
  // of its own to the node (tcp.ts diagnoseTls) and names what it said.
  it('cluster, a wrong CA: a StoreUnavailableError naming the node and the certificate problem', async () => {
    const store = tracked(
      clusterStore({
        nodes: [{ host: cluster.masters[0]!.host, port: TLS_PORT }],
        tls: { ca: certs.otherCa },
        timeoutMs: 1000,
      }),
    );
    const error = await createLock(store)
      .tryAcquire('{a}tls-bad', { ttlMs: 5000 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(chain(error)).toContain(`${cluster.masters[0]!.host}:${TLS_PORT}`);
    expect(chain(error)).toMatch(/TLS handshake with .* failed: self-signed certificate/);
  });

  it('plain text to a TLS port is refused, not left hanging', async () => {
    const t0 = performance.now();
    const error = await createLock(standalone(undefined))
      .tryAcquire('tls-plain', { ttlMs: 5000 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect(chain(error)).toContain(`${server.host}:${TLS_PORT}`);
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
