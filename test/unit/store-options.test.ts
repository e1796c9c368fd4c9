// A store's options are checked when it is created: a bad URL, port or node list is a ValidationError naming
// every problem at once, thrown by redisStore / clusterStore / upstashStore / storeFromConfig (fromEnv's) themselves, never
// a store error at the first call. No secret (a password in the URL, the token) is ever part of the message.
// Nothing here reaches a server: a store that is refused never connects.
import { describe, expect, it } from 'vitest';
import { upstashStore, ValidationError } from '../../layers/oncely/src/index.js';
import { clusterStore, redisStore } from '../../layers/oncely/src/ioredis.js';
import { type StoreConfig, storeFromConfig } from '../../layers/oncely/src/transport/from-env.js';

const SECRET = 'pa55-w0rd-very-secret';

/** The ValidationError `create` throws, synchronously. */
function refused(create: () => unknown): ValidationError {
  let thrown: unknown;
  try {
    create();
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(ValidationError);
  expect((thrown as Error).name).toBe('ValidationError');
  expect((thrown as Error).message).not.toContain(SECRET);
  return thrown as ValidationError;
}

describe('redisStore options', () => {
  it.each([
    [
      { url: `http://:${SECRET}@cache.example:6379` },
      /^redisStore options: url must be a redis:\/\/ or rediss:\/\/ URL with a host, got "http:\/\/cache.example:6379"$/,
    ],
    [{ url: `redis://:${SECRET}@cache.example:99999` }, /url must be .* got a value that is not a URL/],
    [
      { url: 'not a url' },
      /url must be a redis:\/\/ or rediss:\/\/ URL with a host, got a value that is not a URL/,
    ],
    [{ url: '' }, /url must be/],
    [{ url: 'redis://cache.example:6379', host: 'other' }, /give url or host and port, not both/],
    [{ host: '' }, /host must be a non-empty string/],
    [{ host: 'cache.example', port: 70_000 }, /port must be a whole number from 1 to 65535, got 70000/],
    [{ host: 'cache.example', timeoutMs: 0 }, /timeoutMs must be a whole number of milliseconds from 1/],
    [
      { host: 'cache.example', tls: 'yes' as unknown as boolean },
      /tls must be true, false or node:tls options/,
    ],
  ])('%j is refused at creation', (options, message) => {
    expect(refused(() => redisStore(options)).message).toMatch(message);
  });

  it('names every problem at once', () => {
    const error = refused(() => redisStore({ url: 'ftp://x', timeoutMs: 1.5, replicas: -1 }));
    expect(error.problems).toEqual([
      expect.stringMatching(/^url must be/),
      expect.stringMatching(/^timeoutMs must be/),
      expect.stringMatching(/^replicas must be/),
    ]);
  });

  it('takes good options, and names the store by host and port only', async () => {
    const store = redisStore({ url: `redis://:${SECRET}@127.0.0.1:6390/0`, timeoutMs: 500 });
    expect(store.name).toBe('redis(127.0.0.1:6390)');
    expect(redisStore({ host: '10.0.0.1' }).name).toBe('redis(10.0.0.1:6379)');
    await store.close();
  });
});

describe('clusterStore options', () => {
  it.each([
    [{ nodes: [] }, /nodes must list at least one seed node/],
    [
      {
        nodes: [
          { host: 'a', port: 7000 },
          { host: 'b', port: 0 },
        ],
      },
      /nodes\[1\]\.port must be a whole number from 1 to 65535, got 0/,
    ],
    [{ nodes: [{ host: '', port: 7000 }] }, /nodes\[0\]\.host must be a non-empty string/],
    [
      { nodes: [{ host: 'a', port: 7000 }], replicaTimeoutMs: 5000 },
      /replicaTimeoutMs must be a whole number of milliseconds from 1 to timeoutMs − 1 \(1999\)/,
    ],
  ])('%j is refused at creation', (options, message) => {
    expect(refused(() => clusterStore(options)).message).toMatch(message);
  });
});

describe('upstashStore options', () => {
  it.each([
    [
      { url: 'redis://eu1.upstash.io', token: SECRET },
      /url must be an http\(s\) URL with a host, got "redis:\/\/eu1.upstash.io"/,
    ],
    [
      { url: 'eu1.upstash.io', token: SECRET },
      /url must be an http\(s\) URL with a host, got a value that is not a URL/,
    ],
    [{ url: 'https://eu1.upstash.io', token: '' }, /token must be a non-empty string/],
    [{ url: 'https://eu1.upstash.io', token: SECRET, timeoutMs: -5 }, /timeoutMs must be a whole number/],
    [
      { url: 'https://eu1.upstash.io', token: SECRET, base64: 1 as unknown as boolean },
      /base64 must be true or false/,
    ],
  ])('%j is refused at creation', (options, message) => {
    expect(refused(() => upstashStore(options)).message).toMatch(message);
  });
});

describe('unknown options', () => {
  it('are refused by every store, naming the close one', () => {
    expect(refused(() => redisStore({ host: 'h', hosts: 'x' } as never)).message).toMatch(
      /unknown option "hosts" \(did you mean host\?\)/,
    );
    expect(
      refused(() => clusterStore({ nodes: [{ host: 'h', port: 1 }], node: [] } as never)).message,
    ).toMatch(/unknown option "node" \(did you mean nodes\?\)/);
    expect(
      refused(() => upstashStore({ url: 'https://h', token: SECRET, maxConnection: 2 } as never)).message,
    ).toMatch(/unknown option "maxConnection" \(did you mean maxConnections\?\)/);
  });
});

describe('storeFromConfig', () => {
  it.each<[StoreConfig, RegExp]>([
    [{ kind: 'redis', url: `http://:${SECRET}@cache.example:6379` }, /redisStore options: url must be/],
    [{ kind: 'cluster', nodes: [] }, /clusterStore options: nodes must list/],
    [{ kind: 'upstash', url: 'nope', token: SECRET }, /upstashStore options: url must be/],
  ])('%j is refused at creation (a TCP one before its chunk is loaded)', (config, message) => {
    expect(refused(() => storeFromConfig(config)).message).toMatch(message);
  });

  it('names a TCP store before its chunk is loaded', async () => {
    const store = storeFromConfig({
      kind: 'cluster',
      nodes: [
        { host: 'a.example', port: 7000 },
        { host: 'b', port: 7001 },
      ],
    });
    expect([store.kind, store.name]).toEqual(['cluster', 'cluster(a.example:7000,…)']);
    await store.close();
  });
});
