import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  InProgressError,
  LockLostError,
  LockNotAcquiredError,
  LockNotReleasedError,
  MissingKeyError,
  OncelyError,
  PayloadMismatchError,
  QuorumError,
  ReplicationError,
  ResultNotStorableError,
  StoreAuthError,
  StoreError,
  StoreUnavailableError,
  ValidationError,
} from '../../layers/oncely/src/index.js';

const nodes = [{ node: '#0 a:1', status: 'taken' as const }];

/** Every error class: built as `(message, options)`, its fields are the options other than `cause`. */
const CASES: [string, OncelyError, typeof OncelyError, Record<string, unknown>][] = [
  ['ValidationError', new ValidationError('m', { problems: ['p'] }), ValidationError, { problems: ['p'] }],
  ['ConfigError', new ConfigError('m', { problems: ['p'] }), ConfigError, { problems: ['p'] }],
  [
    'StoreError',
    new StoreError('m', { store: 's', ambiguous: false }),
    StoreError,
    { store: 's', ambiguous: false },
  ],
  [
    'StoreUnavailableError',
    new StoreUnavailableError('m', { store: 's', ambiguous: true }),
    StoreError,
    { store: 's', ambiguous: true },
  ],
  [
    'ReplicationError',
    new ReplicationError('m', { store: 's', acknowledged: 0, required: 1 }),
    StoreUnavailableError,
    { store: 's', ambiguous: true, acknowledged: 0, required: 1 },
  ],
  ['StoreAuthError', new StoreAuthError('m', { store: 's', ambiguous: false }), StoreError, { store: 's' }],
  [
    'LockNotAcquiredError',
    new LockNotAcquiredError('m', { key: 'k', attempts: 2 }),
    LockNotAcquiredError,
    { key: 'k', attempts: 2, history: [] },
  ],
  [
    'LockNotReleasedError',
    new LockNotReleasedError('m', { key: 'k', attempts: 3 }),
    LockNotReleasedError,
    { key: 'k', attempts: 3 },
  ],
  [
    'LockLostError',
    new LockLostError('m', { key: 'k', reason: 'stolen' }),
    LockLostError,
    { reason: 'stolen' },
  ],
  [
    'InProgressError',
    new InProgressError('m', { key: 'k', retryAfterMs: 5 }),
    InProgressError,
    { key: 'k', retryAfterMs: 5 },
  ],
  ['PayloadMismatchError', new PayloadMismatchError('m', { key: 'k' }), PayloadMismatchError, { key: 'k' }],
  ['MissingKeyError', new MissingKeyError('m', { source: 'sqs' }), MissingKeyError, { source: 'sqs' }],
  [
    'ResultNotStorableError',
    new ResultNotStorableError('m', { key: 'k', reason: 'too-large', bytes: 9 }),
    ResultNotStorableError,
    { key: 'k', reason: 'too-large', bytes: 9 },
  ],
  [
    'QuorumError',
    new QuorumError('m', { key: 'k', operation: 'acquire', quorum: 2, nodes }),
    QuorumError,
    { key: 'k', operation: 'acquire', quorum: 2, nodes },
  ],
];

describe('errors: (message, options), the options other than cause as fields', () => {
  it.each(CASES)('%s', (name, err, base, fields) => {
    expect(err).toBeInstanceOf(Error);
    expect(err).toBeInstanceOf(OncelyError);
    expect(err).toBeInstanceOf(base);
    expect(err.name).toBe(name);
    expect(err.message).toBe('m');
    expect(err).toMatchObject(fields);
    expect('cause' in err).toBe(false);
  });

  it('keeps a cause given, even an undefined one, as Error does', () => {
    const cause = new Error('down');
    expect(new StoreError('m', { store: 's', ambiguous: true, cause }).cause).toBe(cause);
    expect(new LockLostError('m', { key: 'k', reason: 'expired', cause }).cause).toBe(cause);
    expect('cause' in new ValidationError('m', { problems: [], cause: undefined })).toBe(true);
  });

  it('QuorumError still sorts its nodes', () => {
    const err = new QuorumError('m', {
      key: 'k',
      operation: 'extend',
      quorum: 2,
      nodes: [...nodes, { node: '#1 b:1', status: 'unreachable', cause: new Error('x') }],
    });
    expect(err.taken.map((n) => n.node)).toEqual(['#0 a:1']);
    expect(err.unreachable.map((n) => n.node)).toEqual(['#1 b:1']);
  });
});
