import { Redis } from 'ioredis';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, fromEnv, type Store, withOnce } from '../../layers/oncely/src/index.js';
import { lambdaContext } from '../support/once.js';
import { useRedis } from '../support/servers.js';

// Configuration that means what it says, against a real redis-server: a flag spelled any accepted way
// takes effect, a misspelled one stops the handler instead of silently meaning false.
describe('fromEnv and flags against a real server', () => {
  const redis = useRedis();
  const stores: Store[] = [];
  const open = (env: Record<string, string>) => {
    const store = fromEnv(env);
    stores.push(store);
    return store;
  };
  afterAll(async () => {
    vi.unstubAllEnvs();
    await Promise.all(stores.map((s) => s.close()));
  });

  async function keyCount(): Promise<number> {
    const admin = new Redis({ host: redis().host, port: redis().port, protocol: 2 });
    try {
      return await admin.dbsize();
    } finally {
      admin.disconnect();
    }
  }

  it.each(['YES', 'True', '1'])(
    'ONCELY_DISABLED=%s: the handler runs every time, nothing is written',
    async (text) => {
      const store = open({ ONCELY_REDIS_URL: redis().url });
      let runs = 0;
      const h = withOnce(async () => ++runs, { store, key: { jmespath: 'id' }, logLevel: 'silent' });
      vi.stubEnv('ONCELY_DISABLED', text);
      try {
        await h({ id: `disabled-${text}` }, lambdaContext());
        await h({ id: `disabled-${text}` }, lambdaContext());
      } finally {
        vi.unstubAllEnvs();
      }
      expect(runs).toBe(2);
      expect(await keyCount()).toBe(0);
      // With the flag unset the same handler runs once per key and writes its record.
      await h({ id: `enabled-${text}` }, lambdaContext());
      await h({ id: `enabled-${text}` }, lambdaContext());
      expect(runs).toBe(3);
      expect(await keyCount()).toBeGreaterThan(0);
      const admin = new Redis({ host: redis().host, port: redis().port, protocol: 2 });
      await admin.flushall();
      admin.disconnect();
    },
  );

  it('ONCELY_DISABLED=ture (a typo): a ConfigError, the handler does not run', async () => {
    const store = open({ ONCELY_REDIS_URL: redis().url });
    let runs = 0;
    const h = withOnce(async () => ++runs, { store, key: { jmespath: 'id' }, logLevel: 'silent' });
    vi.stubEnv('ONCELY_DISABLED', 'ture');
    try {
      await expect(h({ id: 'typo' }, lambdaContext())).rejects.toThrow(ConfigError);
    } finally {
      vi.unstubAllEnvs();
    }
    expect(runs).toBe(0);
  });

  it('rediss:// to this plain server with ONCELY_REDIS_TLS=false is refused up front', () => {
    const url = `rediss://${redis().host}:${redis().port}`;
    expect(() => open({ ONCELY_REDIS_URL: url, ONCELY_REDIS_TLS: 'false' })).toThrow(
      /rediss:\/\/ \(TLS\) but ONCELY_REDIS_TLS turns TLS off/,
    );
    expect(() => open({ ONCELY_REDIS_URL: redis().url, ONCELY_REDIS_TLS: 'off' })).toThrow(ConfigError);
  });

  it('redis:// with no host is refused (a client would quietly connect to 127.0.0.1:6379)', () => {
    expect(() => open({ ONCELY_REDIS_URL: 'redis://' })).toThrow(/with a host/);
  });
});
