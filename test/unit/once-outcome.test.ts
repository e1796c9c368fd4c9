/** outcomeOf: what every claim reply means under every policy, as one table. */
import { describe, expect, it } from 'vitest';
import {
  InProgressError,
  PayloadMismatchError,
  StoreError,
  StoreUnavailableError,
} from '../../layers/oncely/src/index.js';
import { type ClaimPolicy, outcomeOf } from '../../layers/oncely/src/once/outcome.js';
import type { ClaimReply } from '../../layers/oncely/src/once/record.js';

const base: ClaimPolicy = {
  namespace: 'fn',
  key: 'k',
  duplicate: 'throw',
  failOpen: false,
  ttlMs: 30_000,
  late: false,
  http: false,
  store: 'redis://h:1',
  waitedMs: 0,
  waitLeftMs: 0,
  pollMs: 200,
};
const unavailable = new StoreUnavailableError('down', { store: 's', ambiguous: false });
const storeFailed = new StoreError('WRONGTYPE', { store: 's', ambiguous: false });
const http = { statusCode: 200, body: 'x' };

type Row = [
  string,
  ClaimReply,
  Partial<ClaimPolicy>,
  Record<string, unknown>,
  (new (...a: never[]) => Error)?,
];

const TABLE: Row[] = [
  [
    'claimed',
    { kind: 'claimed', fence: 7 },
    {},
    { kind: 'run', fence: 7, decision: { decision: 'claimed', key: 'k', fence: 7, ttlMs: 30_000 } },
  ],
  [
    'claimed too late',
    { kind: 'claimed', fence: 7 },
    { late: true },
    {
      kind: 'throw',
      giveBack: true,
      decision: {
        decision: 'store-error',
        key: 'k',
        reason: "redis://h:1: the claim's reply came after its lease ended",
      },
    },
    StoreUnavailableError,
  ],
  [
    'completed',
    { kind: 'completed', value: 42 },
    {},
    { kind: 'return', value: 42, decision: { decision: 'duplicate-returned', key: 'k' } },
  ],
  [
    'completed after waiting',
    { kind: 'completed', value: 42 },
    { duplicate: 'wait', waitedMs: 30 },
    { kind: 'return', value: 42, decision: { decision: 'duplicate-returned', key: 'k', waitedMs: 30 } },
  ],
  [
    'completed, waited under throw',
    { kind: 'completed', value: 42 },
    { waitedMs: 30 },
    { kind: 'return', value: 42, decision: { decision: 'duplicate-returned', key: 'k' } },
  ],
  [
    'completed HTTP answer',
    { kind: 'completed', value: http },
    { http: true },
    { kind: 'return', value: { ...http, headers: { 'idempotent-replayed': 'true' } } },
  ],
  [
    'completed HTTP-shaped, not HTTP',
    { kind: 'completed', value: http },
    {},
    { kind: 'return', value: http },
  ],
  [
    'mismatch',
    { kind: 'mismatch' },
    {},
    { kind: 'throw', giveBack: false, decision: { decision: 'mismatch', key: 'k' } },
    PayloadMismatchError,
  ],
  [
    'in progress, throw',
    { kind: 'in-progress', retryAfterMs: 900 },
    {},
    { kind: 'throw', giveBack: false, decision: { decision: 'in-progress', key: 'k', retryAfterMs: 900 } },
    InProgressError,
  ],
  [
    'in progress, skip',
    { kind: 'in-progress', retryAfterMs: 900 },
    { duplicate: 'skip' },
    { kind: 'return', value: undefined, decision: { decision: 'skipped', key: 'k', retryAfterMs: 900 } },
  ],
  [
    'in progress, wait: poll',
    { kind: 'in-progress', retryAfterMs: 900 },
    { duplicate: 'wait', waitLeftMs: 5000 },
    { kind: 'wait', afterMs: 200 },
  ],
  [
    'in progress, wait: lease ends first',
    { kind: 'in-progress', retryAfterMs: 50 },
    { duplicate: 'wait', waitLeftMs: 5000 },
    { kind: 'wait', afterMs: 50 },
  ],
  [
    'in progress, wait: time nearly up',
    { kind: 'in-progress', retryAfterMs: 900 },
    { duplicate: 'wait', waitLeftMs: 20 },
    { kind: 'wait', afterMs: 20 },
  ],
  [
    'in progress, wait: no lease left',
    { kind: 'in-progress', retryAfterMs: 0 },
    { duplicate: 'wait', waitLeftMs: 5000 },
    { kind: 'wait', afterMs: 200 },
  ],
  [
    'in progress, wait: out of time',
    { kind: 'in-progress', retryAfterMs: 900 },
    { duplicate: 'wait', waitLeftMs: 0 },
    { kind: 'throw', decision: { decision: 'in-progress', key: 'k', retryAfterMs: 900 } },
    InProgressError,
  ],
  [
    'store unreachable, fail closed',
    { kind: 'failed', error: unavailable },
    {},
    { kind: 'throw', giveBack: false, decision: { decision: 'store-error', key: 'k', reason: 'down' } },
    StoreUnavailableError,
  ],
  [
    'store unreachable, fail open',
    { kind: 'failed', error: unavailable },
    { failOpen: true },
    { kind: 'run-unfenced', decision: { decision: 'fail-open', key: 'k', reason: 'down' } },
  ],
  [
    'store error, fail open: still closed',
    { kind: 'failed', error: storeFailed },
    { failOpen: true },
    { kind: 'throw', decision: { decision: 'store-error', key: 'k', reason: 'WRONGTYPE' } },
    StoreError,
  ],
  [
    'no reply in a batch',
    { kind: 'failed', error: undefined },
    {},
    { kind: 'throw', decision: { decision: 'store-error', key: 'k', reason: 'no reply' } },
  ],
];

describe('outcomeOf', () => {
  it.each(TABLE)('%s', (_name, reply, policy, expected, errorType) => {
    const outcome = outcomeOf(reply, { ...base, ...policy });
    expect(outcome).toMatchObject(expected);
    if (errorType) {
      expect(outcome.kind).toBe('throw');
      expect((outcome as { error: unknown }).error).toBeInstanceOf(errorType);
    }
  });

  it('names the key and the holder’s remaining lease in an InProgressError', () => {
    const o = outcomeOf({ kind: 'in-progress', retryAfterMs: 900 }, base);
    const err = (o as { error: InProgressError }).error;
    expect(err.key).toBe('k');
    expect(err.retryAfterMs).toBe(900);
    expect(err.message).toContain('900 ms');
  });

  it('hands a store failure through as it came', () => {
    const o = outcomeOf({ kind: 'failed', error: unavailable }, base);
    expect((o as { error: unknown }).error).toBe(unavailable);
  });
});
