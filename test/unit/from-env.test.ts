import { describe, expect, it } from 'vitest';
import { redact } from '../../layers/oncely/src/errors.js';
import { ConfigError, fromEnv } from '../../layers/oncely/src/index.js';
import { configFromEnv, envFlag } from '../../layers/oncely/src/transport/from-env.js';

const TOKEN = 'AXsecretTOKEN1234567890';
const PASSWORD = 'pa55-w0rd-very-secret';

function problems(env: Record<string, string>): ConfigError {
  try {
    configFromEnv(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as Error).name).toBe('ConfigError');
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('configFromEnv', () => {
  it('picks REST from the Upstash pair', () => {
    expect(
      configFromEnv({ UPSTASH_REDIS_REST_URL: 'https://eu1-x.upstash.io', UPSTASH_REDIS_REST_TOKEN: TOKEN }),
    ).toEqual({ kind: 'upstash', url: 'https://eu1-x.upstash.io', token: TOKEN, timeoutMs: undefined });
  });

  it('picks a cluster from ONCELY_REDIS_CLUSTER_NODES, with auth and TLS', () => {
    expect(
      configFromEnv({
        ONCELY_REDIS_CLUSTER_NODES: 'a.cache.amazonaws.com:6379, [::1]:7000',
        ONCELY_REDIS_USERNAME: 'app',
        ONCELY_REDIS_PASSWORD: PASSWORD,
        ONCELY_REDIS_TLS: 'true',
        ONCELY_TIMEOUT_MS: '1500',
      }),
    ).toEqual({
      kind: 'cluster',
      nodes: [
        { host: 'a.cache.amazonaws.com', port: 6379 },
        { host: '::1', port: 7000 },
      ],
      username: 'app',
      password: PASSWORD,
      tls: true,
      timeoutMs: 1500,
    });
  });

  it('picks standalone from ONCELY_REDIS_URL; rediss:// turns TLS on', () => {
    const c = configFromEnv({ ONCELY_REDIS_URL: 'rediss://h:6380' });
    expect(c).toMatchObject({ kind: 'redis', url: 'rediss://h:6380', tls: true });
  });

  it('reports every problem in one error', () => {
    const err = problems({
      UPSTASH_REDIS_REST_URL: 'ftp://x',
      ONCELY_REDIS_CLUSTER_NODES: 'a:1,b,c:99999',
      ONCELY_TIMEOUT_MS: '1.5',
      ONCELY_REDIS_TLS: 'maybe',
    });
    expect(err.problems).toEqual([
      'ONCELY_TIMEOUT_MS must be a whole number of milliseconds from 1 to 60000',
      'ONCELY_REDIS_TLS must be true or false (also 1/0, yes/no, any case)',
      'set only one store, found UPSTASH_REDIS_REST_URL, ONCELY_REDIS_CLUSTER_NODES',
      'UPSTASH_REDIS_REST_TOKEN is missing (UPSTASH_REDIS_REST_URL is set)',
      'UPSTASH_REDIS_REST_URL must be an http(s) URL with a host, got "unsupported-scheme://x"',
      'ONCELY_REDIS_CLUSTER_NODES entry 2 of 3 is not host:port',
      'ONCELY_REDIS_CLUSTER_NODES entry 3 of 3 has a port out of range (1 to 65535)',
    ]);
  });

  it('says what to set when nothing is configured', () => {
    expect(problems({}).message).toMatch(
      /UPSTASH_REDIS_REST_URL.*ONCELY_REDIS_CLUSTER_NODES.*ONCELY_REDIS_URL/,
    );
  });

  it('never puts a token or password in the error', () => {
    const a = problems({ UPSTASH_REDIS_REST_TOKEN: TOKEN, ONCELY_REDIS_URL: `http://u:${PASSWORD}@h` });
    expect(a.message).not.toContain(TOKEN);
    expect(a.message).not.toContain(PASSWORD);
    expect(a.message).toContain('got "http://h"');
    const b = problems({
      UPSTASH_REDIS_REST_URL: `https://user:${TOKEN}@x.upstash.io`,
      UPSTASH_REDIS_REST_TOKEN: TOKEN,
    });
    expect(b.message).toMatch(/must not carry credentials/);
    expect(b.message).not.toContain(TOKEN);
  });

  it('rejects redis:// and rediss:// with no host (ioredis would quietly pick 127.0.0.1:6379)', () => {
    for (const [url, shown] of [
      ['redis://', '"redis://"'],
      ['rediss://', '"rediss://"'],
      ['redis:///0', '"redis://"'],
      ['redis://:secret-pass@', 'a value that is not a URL'],
    ]) {
      expect(problems({ ONCELY_REDIS_URL: url! }).problems).toEqual([
        `ONCELY_REDIS_URL must be a redis:// or rediss:// URL with a host, got ${shown}`,
      ]);
    }
  });

  it('rejects rediss:// with ONCELY_REDIS_TLS off, in every spelling', () => {
    for (const off of ['false', 'FALSE', '0', 'no', 'No']) {
      expect(problems({ ONCELY_REDIS_URL: 'rediss://h:6380', ONCELY_REDIS_TLS: off }).problems).toEqual([
        'ONCELY_REDIS_URL is rediss:// (TLS) but ONCELY_REDIS_TLS turns TLS off: pick one',
      ]);
    }
    expect(configFromEnv({ ONCELY_REDIS_URL: 'rediss://h:6380', ONCELY_REDIS_TLS: 'yes' })).toMatchObject({
      tls: true,
    });
  });

  it('rejects a path that is not a database number', () => {
    expect(problems({ ONCELY_REDIS_URL: 'redis://h:6379/zero' }).problems).toEqual([
      'ONCELY_REDIS_URL path must be a database number, got "redis://h:6379"/…',
    ]);
    expect(configFromEnv({ ONCELY_REDIS_URL: 'redis://h:6379/2' })).toMatchObject({ kind: 'redis' });
  });

  it.each([
    ['true', true],
    ['TRUE', true],
    ['True', true],
    ['1', true],
    ['yes', true],
    ['YES', true],
    [' yes ', true],
    ['false', false],
    ['False', false],
    ['0', false],
    ['no', false],
    ['NO', false],
  ])('%j means %s for ONCELY_REDIS_TLS and ONCELY_DISABLED', (text, value) => {
    expect(configFromEnv({ ONCELY_REDIS_URL: 'redis://h', ONCELY_REDIS_TLS: text })).toMatchObject({
      tls: value,
    });
    expect(envFlag('ONCELY_DISABLED', { ONCELY_DISABLED: text })).toBe(value);
  });

  it.each(['ture', 'on', 'off', 'y', 'n', '2', '-1', 'enabled', 'truefalse', 'false!'])(
    'a flag spelled %j is a ConfigError, not silently false',
    (text) => {
      expect(problems({ ONCELY_REDIS_URL: 'redis://h', ONCELY_REDIS_TLS: text }).problems).toEqual([
        'ONCELY_REDIS_TLS must be true or false (also 1/0, yes/no, any case)',
      ]);
      expect(() => envFlag('ONCELY_DISABLED', { ONCELY_DISABLED: text })).toThrow(ConfigError);
      expect(() => envFlag('ONCELY_DISABLED', { ONCELY_DISABLED: text })).toThrow(
        /ONCELY_DISABLED must be true or false/,
      );
    },
  );

  it('an unset or empty flag is its default', () => {
    expect(envFlag('ONCELY_DISABLED', {})).toBe(false);
    expect(envFlag('ONCELY_DISABLED', { ONCELY_DISABLED: ' ' })).toBe(false);
    expect(configFromEnv({ ONCELY_REDIS_URL: 'redis://h', ONCELY_REDIS_TLS: '' })).toMatchObject({
      tls: undefined,
    });
  });

  it('fromEnv builds the store without connecting', async () => {
    const store = fromEnv({ ONCELY_REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:1` });
    expect(store.kind).toBe('redis');
    expect(store.name).toBe('redis(127.0.0.1:1)');
    await store.close();
  });
});

describe('redact', () => {
  it('hides URL credentials and listed secrets', () => {
    expect(redact(`redis://user:${PASSWORD}@host:6379 and ${TOKEN}`, [TOKEN])).toBe(
      'redis://***@host:6379 and ***',
    );
  });
});

describe('the replica wait from the environment', () => {
  it('ONCELY_REDIS_REPLICAS (auto or a whole number) and ONCELY_REDIS_REPLICA_TIMEOUT_MS reach the TCP stores', () => {
    expect(
      configFromEnv({
        ONCELY_REDIS_CLUSTER_NODES: 'h:7000',
        ONCELY_REDIS_REPLICAS: '2',
        ONCELY_REDIS_REPLICA_TIMEOUT_MS: '750',
      }),
    ).toMatchObject({ kind: 'cluster', replicas: 2, replicaTimeoutMs: 750 });
    expect(
      configFromEnv({ ONCELY_REDIS_URL: 'redis://h:6379', ONCELY_REDIS_REPLICAS: ' AUTO ' }),
    ).toMatchObject({ kind: 'redis', replicas: 'auto', replicaTimeoutMs: undefined });
    expect(configFromEnv({ ONCELY_REDIS_URL: 'redis://h:6379', ONCELY_REDIS_REPLICAS: '0' })).toMatchObject({
      replicas: 0,
    });
    // Unset: the store's defaults ('auto', 1000 ms or half the call timeout).
    const plain = configFromEnv({ ONCELY_REDIS_URL: 'redis://h:6379' });
    expect(plain).toMatchObject({ replicas: undefined, replicaTimeoutMs: undefined });
    // The bound may be up to ONCELY_TIMEOUT_MS − 1.
    expect(
      configFromEnv({
        ONCELY_REDIS_URL: 'redis://h:6379',
        ONCELY_TIMEOUT_MS: '5000',
        ONCELY_REDIS_REPLICA_TIMEOUT_MS: '4999',
      }),
    ).toMatchObject({ replicaTimeoutMs: 4999 });
  });

  it.each([
    ['ONCELY_REDIS_REPLICAS', 'all', /ONCELY_REDIS_REPLICAS must be auto or a whole number from 0 to 16/],
    ['ONCELY_REDIS_REPLICAS', '-1', /ONCELY_REDIS_REPLICAS must be/],
    ['ONCELY_REDIS_REPLICAS', '1.5', /ONCELY_REDIS_REPLICAS must be/],
    ['ONCELY_REDIS_REPLICAS', '17', /ONCELY_REDIS_REPLICAS must be/],
    ['ONCELY_REDIS_REPLICAS', '0x1', /ONCELY_REDIS_REPLICAS must be/],
    ['ONCELY_REDIS_REPLICA_TIMEOUT_MS', '0', /from 1 to 1999 \(below ONCELY_TIMEOUT_MS\)/],
    ['ONCELY_REDIS_REPLICA_TIMEOUT_MS', '2000', /ONCELY_REDIS_REPLICA_TIMEOUT_MS must be/],
    ['ONCELY_REDIS_REPLICA_TIMEOUT_MS', '1e3', /ONCELY_REDIS_REPLICA_TIMEOUT_MS must be/],
    ['ONCELY_REDIS_REPLICA_TIMEOUT_MS', 'soon', /ONCELY_REDIS_REPLICA_TIMEOUT_MS must be/],
  ])('%s=%s is a ConfigError naming the variable', (name, value, message) => {
    const stores: Record<string, string>[] = [
      { ONCELY_REDIS_URL: 'redis://h:6379' },
      { ONCELY_REDIS_CLUSTER_NODES: 'h:7000' },
      { UPSTASH_REDIS_REST_URL: 'https://eu1-x.upstash.io', UPSTASH_REDIS_REST_TOKEN: TOKEN },
    ];
    for (const store of stores) {
      const err = problems({ ...store, [name]: value });
      expect(err.problems).toHaveLength(1);
      expect(err.problems[0]).toMatch(message);
    }
  });

  it("applies to the REST transport too (WAIT in the grant's /pipeline request)", () => {
    expect(
      configFromEnv({
        UPSTASH_REDIS_REST_URL: 'https://eu1-x.upstash.io',
        UPSTASH_REDIS_REST_TOKEN: TOKEN,
        ONCELY_REDIS_REPLICAS: '1',
        ONCELY_REDIS_REPLICA_TIMEOUT_MS: '250',
      }),
    ).toMatchObject({ kind: 'upstash', replicas: 1, replicaTimeoutMs: 250 });
  });

  it('a bad value fails fromEnv() at once, before any connection', () => {
    expect(() => fromEnv({ ONCELY_REDIS_URL: 'redis://h:6379', ONCELY_REDIS_REPLICAS: 'two' })).toThrow(
      ConfigError,
    );
  });
});
