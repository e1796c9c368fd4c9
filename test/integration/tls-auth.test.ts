import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type RedisProcess, startRedis } from '../../dev/redis-server.js';
import {
  createLock,
  StoreAuthError,
  StoreError,
  StoreUnavailableError,
} from '../../layers/oncely/src/index.js';
import { redisStore } from '../../layers/oncely/src/ioredis.js';

/** ElastiCache / MemoryDB shape: TLS in transit and an RBAC user, here on a real redis-server. */
describe('standalone over TLS with an ACL user', () => {
  let dir: string;
  let server: RedisProcess;
  let tlsPort: number;
  let ca: string;
  const password = 'rbac-password-123';

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'oncely-tls-'));
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost'],
        ...['-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')],
        ...['-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      ],
      { stdio: 'ignore' },
    );
    ca = readFileSync(path.join(dir, 'cert.pem'), 'utf8');
    tlsPort = await freePort();
    server = await startRedis({
      args: [
        ...['--tls-port', String(tlsPort), '--tls-auth-clients', 'no'],
        ...['--tls-cert-file', path.join(dir, 'cert.pem'), '--tls-key-file', path.join(dir, 'key.pem')],
        ...['--user', 'app', 'on', `>${password}`, '~oncely:*', '+@all'],
      ],
    });
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('locks with tls + username + password', async () => {
    const store = redisStore({ host: '127.0.0.1', port: tlsPort, tls: { ca }, username: 'app', password });
    const lease = await createLock(store).tryAcquire('tls-key', { ttlMs: 5000 });
    expect(lease?.fence).toBeGreaterThan(0);
    expect(await lease?.release()).toBe('released');
    await store.close();
  });

  it('a wrong password for the user is a StoreAuthError without the password', async () => {
    const wrong = 'not-the-rbac-password';
    const store = redisStore({
      host: '127.0.0.1',
      port: tlsPort,
      tls: { ca },
      username: 'app',
      password: wrong,
    });
    const err = await createLock(store)
      .tryAcquire('tls-key', { ttlMs: 5000 })
      .catch((e) => e);
    await store.close();
    expect(err).toBeInstanceOf(StoreAuthError);
    expect(`${err.message} ${err.stack}`).not.toContain(wrong);
  });

  it('a certificate the client does not trust fails within the timeout, not a hang', async () => {
    const store = redisStore({
      host: '127.0.0.1',
      port: tlsPort,
      tls: true,
      username: 'app',
      password,
      timeoutMs: 500,
    });
    const t0 = performance.now();
    const err = await createLock(store)
      .tryAcquire('tls-key', { ttlMs: 5000 })
      .catch((e) => e);
    await store.close();
    expect(err).toBeInstanceOf(StoreError);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('plain TCP to the TLS port does not get through', async () => {
    const store = redisStore({ host: '127.0.0.1', port: tlsPort, username: 'app', password, timeoutMs: 500 });
    const err = await createLock(store)
      .tryAcquire('tls-key', { ttlMs: 5000 })
      .catch((e) => e);
    await store.close();
    expect(err).toBeInstanceOf(StoreError);
  });
});
