/**
 * The contract upstashStore relies on in `@upstash/redis` (pinned in package.json): a client built around a
 * Requester of ours sends EVALSHA / EVAL and pipelines through it, in the shape the REST API expects, and
 * with RawRedis hands back replies untouched. If a client version JSON-parses replies again, or changes what
 * it sends, these fail (the gateway tests in test/integration/upstash-transport.test.ts check the same over
 * a real server).
 */
import { readFileSync } from 'node:fs';
import { Redis, type UpstashRequest } from '@upstash/redis';
import { describe, expect, it } from 'vitest';
import { RawRedis } from '../../layers/oncely/src/transport/upstash-http.js';

/** A requester that records each request and answers from `replies` in order. */
function recording(replies: unknown[]) {
  const seen: UpstashRequest[] = [];
  return {
    seen,
    request: async (req: UpstashRequest) => {
      seen.push(req);
      return replies.shift() as never;
    },
  };
}

const version = (path: string) => (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;

describe('@upstash/redis with a requester of ours', () => {
  it('is the version package.json pins (the adapter below was checked against it)', () => {
    const pinned = (
      JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string> }
    ).dependencies['@upstash/redis'];
    expect(version('node_modules/@upstash/redis/package.json')).toBe(pinned);
  });

  it('new Redis(requester) parses replies (why RawRedis exists); RawRedis does not', async () => {
    const parsing = new Redis(recording([{ result: '42' }, { result: '{"a":1}' }]));
    expect(await parsing.evalsha('s', [], [])).toBe(42);
    expect(await parsing.evalsha('s', [], [])).toEqual({ a: 1 });

    const raw = new RawRedis(
      recording([{ result: '42' }, { result: '{"a":1}' }, { result: ['7', 1, null] }]),
    );
    expect(await raw.evalsha('s', [], [])).toBe('42');
    expect(await raw.evalsha('s', [], [])).toBe('{"a":1}');
    expect(await raw.eval('return 1', [], [])).toEqual(['7', 1, null]);
  });

  it('sends one command to / and a pipeline to /pipeline; pipeline replies and errors come back raw', async () => {
    const requester = recording([
      { result: 'OK' },
      [{ result: '42' }, { error: 'NOSCRIPT No matching script' }, { result: ['{"b":2}'] }],
    ]);
    const raw = new RawRedis(requester);
    await raw.evalsha('abc', ['k1', 'k2'], ['t', 500]);
    const p = raw.pipeline();
    p.evalsha('abc', ['k'], ['x']);
    p.evalsha('def', [], []);
    p.eval('return ARGV', [], ['{"b":2}']);
    const replies = await p.exec({ keepErrors: true });
    expect(replies).toEqual([
      { result: '42', error: undefined },
      { result: undefined, error: 'NOSCRIPT No matching script' },
      { result: ['{"b":2}'], error: undefined },
    ]);
    expect(requester.seen.map((r) => [r.path, r.body])).toEqual([
      [undefined, ['evalsha', 'abc', 2, 'k1', 'k2', 't', 500]],
      [
        ['pipeline'],
        [
          ['evalsha', 'abc', 1, 'k', 'x'],
          ['evalsha', 'def', 0],
          ['eval', 'return ARGV', 0, '{"b":2}'],
        ],
      ],
    ]);
  });

  it('calls the requester synchronously from evalsha, eval, scan and pipeline exec (callDeadline relies on it)', async () => {
    const requester = recording([{ result: '1' }, { result: '2' }, { result: ['0', []] }, [{ result: '3' }]]);
    const raw = new RawRedis(requester);
    const sent = [raw.evalsha('s', [], []), raw.eval('return 1', [], [])];
    expect(requester.seen).toHaveLength(2);
    sent.push(raw.scan('0', { match: 'x*', count: 10 }));
    expect(requester.seen).toHaveLength(3);
    const p = raw.pipeline();
    p.evalsha('s', [], []);
    sent.push(p.exec({ keepErrors: true }));
    expect(requester.seen).toHaveLength(4);
    await Promise.all(sent);
  });

  it('an error reply rejects with the server message (the NOSCRIPT fallback reads it)', async () => {
    const raw = new RawRedis(recording([{ error: 'NOSCRIPT No matching script' }]));
    await expect(raw.evalsha('s', [], [])).rejects.toThrow(/NOSCRIPT/);
  });
});
