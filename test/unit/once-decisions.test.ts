/**
 * Decision lines are put together from text (decisions.ts #line: the invocation's JSON, once per invocation, and
 * the decision's without its key member), not from one object per line: each line must still be exactly what
 * JSON.stringify gives of the object the line stands for.
 */
import { describe, expect, it } from 'vitest';
import { type Decision, Decisions, type InvocationFields } from '../../layers/oncely/src/once/decisions.js';
import { digest } from '../../layers/oncely/src/once/record.js';

const MS = Date.UTC(2030, 0, 1, 12, 0, 0, 7);

/** The line as JSON.stringify writes it: the object Decisions documents. */
function expected(level: string, d: Decision, invocation: InvocationFields | undefined, logKeys: boolean) {
  const { key, ...rest } = d;
  const line: Record<string, unknown> = {
    level,
    timestamp: new Date(MS).toISOString(),
    logger: 'oncely',
    message: `oncely: ${d.decision}`,
    ...invocation,
    ...rest,
  };
  if (key !== undefined) {
    line.keyDigest = digest(key);
    if (logKeys) line.key = key.length > 120 ? `${key.slice(0, 117)}...` : key;
  }
  return JSON.stringify(line);
}

const DECISIONS: Decision[] = [
  { namespace: 'fn', decision: 'claimed', key: 'k-1', fence: 1_765_000_000_123, ttlMs: 30_000 },
  { namespace: 'fn', decision: 'completed', key: 'k-1', fence: 2, durationMs: 0 },
  { namespace: 'fn', decision: 'duplicate-returned', key: 'k-1', waitedMs: 12 },
  { namespace: 'n "q" \\ é\n', decision: 'in-progress', key: 'ключ "x"\u2028', retryAfterMs: 900 },
  { namespace: 'fn', decision: 'store-error', key: 'x'.repeat(300), reason: 'a "quoted"\treason\u0001' },
  { namespace: 'fn', decision: 'disabled' },
  { namespace: 'fn', decision: 'lost', key: 'k', fence: Number.NaN, durationMs: Number.POSITIVE_INFINITY },
  { namespace: 'fn', decision: 'released', key: 'k', fence: -0, reason: undefined },
  // The key first, and a reason holding what the key's member looks like.
  { key: 'k', namespace: 'fn', decision: 'mismatch', reason: ',"key":"k" "key":"k"' },
  { namespace: 'fn', decision: 'skipped', reason: '"key":"k"', key: 'k' },
];

const INVOCATIONS: (InvocationFields | undefined)[] = [
  undefined,
  { cold_start: true },
  {
    cold_start: false,
    function_request_id: 'req-"1"',
    function_name: 'orders',
    xray_trace_id: '1-5759e988-bd862e3fe1be46a994272793',
  },
];

describe('decision lines', () => {
  for (const logKeys of [false, true])
    it(`are what JSON.stringify gives of the line's object (logKeys: ${logKeys})`, () => {
      const lines: string[] = [];
      const decisions = new Decisions({
        namespace: 'fn',
        logLevel: 'debug',
        logKeys,
        logger: (line) => lines.push(line),
        wallClock: () => MS,
      });
      const want: string[] = [];
      // The same invocation twice in a row (its fields' text is kept), then another.
      for (const invocation of [...INVOCATIONS, INVOCATIONS[2]]) {
        for (const d of DECISIONS) {
          decisions.emit(d, invocation);
          const level = { debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR' }[
            d.decision === 'disabled'
              ? 'debug'
              : ['claimed', 'completed', 'duplicate-returned'].includes(d.decision)
                ? 'info'
                : ['in-progress', 'released', 'mismatch', 'skipped'].includes(d.decision)
                  ? 'warn'
                  : 'error'
          ];
          want.push(expected(level, d, invocation, logKeys));
        }
      }
      expect(lines).toEqual(want);
      for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();
    });
});
