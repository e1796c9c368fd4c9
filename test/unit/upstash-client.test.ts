import { Redis } from '@upstash/redis';
import { describe, expect, it } from 'vitest';
import { upstashClientStore, ValidationError } from '../../layers/oncely/src/index.js';

describe('upstashClientStore', () => {
  it('refuses a client that would JSON-parse replies', () => {
    const parsing = new Redis({ url: 'http://127.0.0.1:1', token: 't', enableTelemetry: false });
    expect(() => upstashClientStore(parsing)).toThrow(ValidationError);
    expect(() => upstashClientStore(parsing)).toThrow(/automaticDeserialization: false/);
  });
  it('refuses something that is not a client', () => {
    expect(() => upstashClientStore({} as Redis)).toThrow(/@upstash\/redis Redis instance/);
  });
  it('accepts a raw-reply client, with or without auto-pipelining', () => {
    for (const enableAutoPipelining of [true, false]) {
      const raw = new Redis({
        url: 'http://127.0.0.1:1',
        token: 't',
        automaticDeserialization: false,
        enableAutoPipelining,
        enableTelemetry: false,
      });
      expect(upstashClientStore(raw).kind).toBe('upstash');
    }
  });
  it('refuses an unknown option, naming the close one, and a bad name or replica count', () => {
    const raw = new Redis({ url: 'http://127.0.0.1:1', token: 't', automaticDeserialization: false });
    const options = (o: object) => o as Parameters<typeof upstashClientStore>[1];
    expect(() => upstashClientStore(raw, options({ replica: 1 }))).toThrow(ValidationError);
    expect(() => upstashClientStore(raw, options({ replica: 1 }))).toThrow(
      /^upstashClientStore options: unknown option "replica" \(did you mean replicas\?\)/,
    );
    expect(() => upstashClientStore(raw, { name: '' })).toThrow(/name must be a non-empty string/);
    expect(() => upstashClientStore(raw, { replicas: -1 })).toThrow(/replicas/);
    expect(upstashClientStore(raw, { name: 'mine', replicas: 0 }).name).toBe('mine');
  });
});
