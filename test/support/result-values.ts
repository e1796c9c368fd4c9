import type { NotStorableReason } from '../../layers/oncely/src/index.js';

/**
 * Handler results and what a duplicate must get: `exact` (deep-equal with types to the first caller's value) or
 * the ResultNotStored marker with this reason. Each entry makes a fresh value (the handler returns it once).
 */
export const RESULT_VALUES: [label: string, make: () => unknown, expected: 'exact' | NotStorableReason][] = [
  ['a string', () => 'text', 'exact'],
  ['the empty string', () => '', 'exact'],
  ['unicode, a line separator and a lone surrogate', () => 'é ✓ 😀 \u2028 \ud800', 'exact'],
  ['0', () => 0, 'exact'],
  ['a fraction', () => 42.5, 'exact'],
  ['a negative number', () => -17, 'exact'],
  ['MAX_SAFE_INTEGER', () => Number.MAX_SAFE_INTEGER, 'exact'],
  ['a tiny number', () => 1e-7, 'exact'],
  ['true', () => true, 'exact'],
  ['false', () => false, 'exact'],
  ['null', () => null, 'exact'],
  ['undefined', () => undefined, 'exact'],
  ['an empty array', () => [], 'exact'],
  ['an empty object', () => ({}), 'exact'],
  ['an array of nulls', () => [null, null], 'exact'],
  ['an object with a null field', () => ({ a: null }), 'exact'],
  ['nested objects and arrays', () => ({ n: { a: [1, 'two', null, { b: false }] }, z: [[[]]] }), 'exact'],
  ['an HTTP answer', () => ({ statusCode: 201, headers: { 'x-a': '1' }, body: '{"ok":true}' }), 'exact'],
  [
    'a shared (not circular) sub-object',
    () => {
      const s = { v: 1 };
      return { a: s, b: s };
    },
    'exact',
  ],
  ['a Date', () => new Date(0), 'changed-by-json'],
  ['a Date inside an object', () => ({ at: new Date(0) }), 'changed-by-json'],
  ['a Map', () => new Map([['a', 1]]), 'changed-by-json'],
  ['a Set', () => new Set([1]), 'changed-by-json'],
  ['NaN', () => Number.NaN, 'changed-by-json'],
  ['Infinity', () => Number.POSITIVE_INFINITY, 'changed-by-json'],
  ['-Infinity inside an array', () => [Number.NEGATIVE_INFINITY], 'changed-by-json'],
  ['-0', () => -0, 'changed-by-json'],
  ['an undefined field', () => ({ a: undefined }), 'changed-by-json'],
  ['undefined in an array', () => [undefined], 'changed-by-json'],
  ['a Buffer', () => Buffer.from('hi'), 'changed-by-json'],
  ['a Uint8Array', () => new Uint8Array([1, 2]), 'changed-by-json'],
  ['an object with toJSON', () => ({ toJSON: () => 1 }), 'changed-by-json'],
  [
    'a class instance',
    () =>
      new (class Order {
        id = 1;
      })(),
    'changed-by-json',
  ],
  ['an object without a prototype', () => Object.assign(Object.create(null), { a: 1 }), 'changed-by-json'],
  ['an object with a symbol key', () => ({ [Symbol('k')]: 1, a: 1 }), 'changed-by-json'],
  ['a BigInt', () => 10n, 'not-serialisable'],
  ['a BigInt inside an object', () => ({ n: 10n }), 'not-serialisable'],
  [
    'a circular object',
    () => {
      const o: Record<string, unknown> = {};
      o.self = o;
      return o;
    },
    'not-serialisable',
  ],
  ['a function', () => () => 1, 'not-serialisable'],
  ['a function inside an object', () => ({ f: () => 1 }), 'not-serialisable'],
  ['a Symbol', () => Symbol('s'), 'not-serialisable'],
  ['more than 256 KiB of JSON', () => 'x'.repeat(300 * 1024), 'too-large'],
];
