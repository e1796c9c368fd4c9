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
 * `{ ...defaults, ...options }` without the options' undefined fields, checked: `problemsOf` names everything
 * wrong with the result, and check() throws it as one ValidationError titled `what`.
 */
export function resolveOptions<D extends object, O extends object>(
  options: O | undefined,
  defaults: D,
  problemsOf: (resolved: D & O) => string[],
  what: string,
): D & O {
  const given = Object.entries(options ?? {}).filter(([, v]) => v !== undefined);
  const resolved = { ...defaults, ...Object.fromEntries(given) } as D & O;
  check(problemsOf(resolved), what);
  return resolved;
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
