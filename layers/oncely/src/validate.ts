/**
 * Validating options, the one way: each checker returns the problems it found (empty when none); a caller
 * collects every problem of its options and check() throws them as one ValidationError.
 */
import { ValidationError } from './errors.js';

export const MIN_TTL_MS = 10;
/** The largest delay setTimeout accepts: a lease's expiry timer must be able to fire. */
export const MAX_TTL_MS = 2_147_483_647;
/** The most attempts a retry loop may be asked for (a leader's campaign asks for this many). */
export const MAX_ATTEMPTS = 1_000_000;

/** A whole number in [min, max]. */
export function isWhole(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

export function ttlProblems(ttlMs: unknown, field = 'ttlMs'): string[] {
  return isWhole(ttlMs, MIN_TTL_MS, MAX_TTL_MS)
    ? []
    : [
        `${field} must be a whole number of milliseconds from ${MIN_TTL_MS} to ${MAX_TTL_MS}, got ${String(ttlMs)}`,
      ];
}

export function fenceGraceProblems(fenceGraceMs: unknown): string[] {
  return fenceGraceMs === undefined || isWhole(fenceGraceMs, 1, MAX_TTL_MS)
    ? []
    : [
        `fenceGraceMs must be a whole number of milliseconds from 1 to ${MAX_TTL_MS}, got ${String(fenceGraceMs)}`,
      ];
}

/** `value` is undefined (the default) or one of `allowed`. */
export function oneOf<T>(field: string, value: unknown, allowed: readonly T[]): string[] {
  return value === undefined || allowed.includes(value as T)
    ? []
    : [`${field} must be one of ${allowed.map((a) => String(a)).join(', ')}, got ${String(value)}`];
}

/** Throws one ValidationError naming every problem, if there is any. */
export function check(problems: string[], what: string): void {
  if (problems.length > 0) throw new ValidationError(problems, what);
}
