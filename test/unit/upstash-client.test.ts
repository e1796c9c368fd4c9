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
});
