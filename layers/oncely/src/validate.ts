/**
 * Options, the one way: resolveOptions() merges the caller's options over frozen defaults (an option given as
 * undefined takes its default), asks one function for every problem, and throws them all as one
 * ValidationError. The checkers below each return the problems they found (empty when none).
 */
import { invalid } from './errors.js';

export const MIN_TTL_MS = 10;
/** The largest delay setTimeout accepts: a lease's expiry timer must be able to fire. */
export const MAX_TTL_MS = 2_147_483_647;
/** The most attempts a retry loop may be asked for (a leader's campaign asks for this many). */
export const MAX_ATTEMPTS = 1_000_000;

/**
 * The fields an options object may have: every key of `O`, each `true` (a Record, so the compiler refuses a
 * list that misses one or names one `O` does not have).
 */
export type Fields<O> = { readonly [K in keyof Required<O>]: true };

/** `fields` without `names` (the fields of an options type that leaves those out). */
export function without<O, K extends keyof O>(fields: Fields<O>, ...names: K[]): Fields<Omit<O, K>> {
  const rest: Record<PropertyKey, true> = { ...fields };
  for (const name of names) delete rest[name];
  return rest as Fields<Omit<O, K>>;
}

/** `{ field: true }` for every field of `defaults`: the fields of an options object that all have defaults. */
export function fieldsOf<D extends object>(defaults: D): Fields<D> {
  return Object.fromEntries(Object.keys(defaults).map((k) => [k, true])) as Fields<D>;
}

/**
 * `{ ...defaults, ...options }` without the options' undefined fields, checked: a field neither in `defaults`
 * nor in `fields` (the fields without a default, at least) is a problem (naming the close one when there is one: `leaseMs` → "did you mean ttlMs?"), `problemsOf` names
 * everything wrong with the result, and check() throws them all as one ValidationError titled `what`.
 */
export function resolveOptions<D extends object, O extends object>(
  options: O | undefined,
  defaults: D,
  problemsOf: (resolved: D & O) => string[],
  what: string,
  fields: Fields<Omit<O, keyof D>>,
): D & O {
  if (options !== undefined && (typeof options !== 'object' || options === null))
    throw invalid([`options must be an object, got ${options === null ? 'null' : typeof options}`], what);
  const given = Object.entries(options ?? {}).filter(([, v]) => v !== undefined);
  const resolved = { ...defaults, ...Object.fromEntries(given) } as D & O;
  check([...unknownProblems(options, { ...defaults, ...fields }), ...problemsOf(resolved)], what);
  return resolved;
}

/** Names other libraries (and earlier habits) give to oncely's options. */
const ALIASES: Readonly<Record<string, readonly string[]>> = {
  ttlMs: [
    'lease',
    'leaseMs',
    'leaseTime',
    'ttl',
    'duration',
    'durationMs',
    'expiry',
    'expiryMs',
    'expiresIn',
  ],
  retentionMs: ['expiresAfterSeconds', 'expiresAfterMs', 'retention', 'ttlRetentionMs'],
  delayMs: ['retryDelay', 'retryDelayMs', 'delay'],
  jitterMs: ['retryJitter', 'jitter'],
  attempts: ['retryCount', 'retries', 'maxAttempts'],
  extendBeforeMs: ['automaticExtensionThreshold', 'renewEveryMs', 'extendEveryMs'],
  prefix: ['keyPrefix'],
  namespace: ['functionName'],
};

/** Whether `fields` names every field of `options`: the check of every call on a hot path (allocates nothing). */
export function fieldsFit(options: object | undefined, fields: object): boolean {
  for (const name in options) if (!Object.hasOwn(fields, name)) return false;
  return true;
}

/** The problems of fields of `options` that `fields` does not name (empty when none). */
export function unknownProblems(options: object | undefined, fields: object): string[] {
  const problems: string[] = [];
  for (const name of Object.keys(options ?? {})) {
    if (Object.hasOwn(fields, name)) continue;
    const near = closest(name, Object.keys(fields));
    problems.push(`unknown option "${name}"${near ? ` (did you mean ${near}?)` : ''}`);
  }
  return problems;
}

/** The known name `name` most likely meant: a known alias, the same letters in another case, or a near typo. */
function closest(name: string, known: readonly string[]): string | undefined {
  const alias = known.find((k) => ALIASES[k]?.some((a) => a.toLowerCase() === name.toLowerCase()));
  if (alias) return alias;
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const k of known) {
    const d = distance(name.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

/** Levenshtein distance (names are short: one row). */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++)
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/** Throws one ValidationError naming every problem, if there is any. */
export function check(problems: string[], what: string): void {
  if (problems.length > 0) throw invalid(problems, what);
}

/** A whole number in [min, max]. */
export function isWhole(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

/** A whole number in [min, max] (`ms`: of milliseconds). */
export function wholeProblems(field: string, v: unknown, min: number, max: number, unit?: 'ms'): string[] {
  return isWhole(v, min, max)
    ? []
    : [
        `${field} must be a whole number ${unit === 'ms' ? 'of milliseconds ' : ''}from ${min} to ${max}, got ${String(v)}`,
      ];
}

/** A lease's length: whole milliseconds from MIN_TTL_MS to MAX_TTL_MS. */
export function ttlProblems(ttlMs: unknown, field = 'ttlMs'): string[] {
  return wholeProblems(field, ttlMs, MIN_TTL_MS, MAX_TTL_MS, 'ms');
}

/** using()'s extendBeforeMs: undefined (the default, half the TTL) or a whole number from 1 to ttlMs − 1. */
export function extendBeforeProblems(extendBeforeMs: unknown, ttlMs: number | undefined): string[] {
  return extendBeforeMs === undefined || isWhole(extendBeforeMs, 1, (ttlMs ?? 0) - 1)
    ? []
    : ['extendBeforeMs must be a whole number from 1 to ttlMs − 1'];
}

/** Undefined (the default) or a whole number of milliseconds from 1 to MAX_TTL_MS. */
export function fenceGraceProblems(fenceGraceMs: unknown): string[] {
  return fenceGraceMs === undefined ? [] : wholeProblems('fenceGraceMs', fenceGraceMs, 1, MAX_TTL_MS, 'ms');
}

/** `value` is undefined (the default) or one of `allowed`. */
export function oneOf<T>(field: string, value: unknown, allowed: readonly T[]): string[] {
  return value === undefined || allowed.includes(value as T)
    ? []
    : [`${field} must be one of ${allowed.map((a) => String(a)).join(', ')}, got ${String(value)}`];
}

/** Undefined (the default) or a function. */
export function fnProblems(field: string, value: unknown): string[] {
  return value === undefined || typeof value === 'function' ? [] : [`${field} must be a function`];
}

/** A key prefix or namespace: 1 to `max` characters, no { or } (they would break the hash tag). */
export function prefixProblems(field: string, value: unknown, max = Number.POSITIVE_INFINITY): string[] {
  return typeof value === 'string' && value.length > 0 && value.length <= max && !/[{}]/.test(value)
    ? []
    : [
        max === Number.POSITIVE_INFINITY
          ? `${field} must be a non-empty string without { or }`
          : `${field} must be 1 to ${max} characters without { or }`,
      ];
}
