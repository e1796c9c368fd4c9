/**
 * A fenced resource for partition tests: a write carries a fence and is refused when a greater one was
 * accepted before (what a resource must do with a fence). Every attempt is appended to a log,
 * `ok:<writer>:<fence>` or `refused:<writer>:<fence>`, so a test can read who wrote, in which order.
 */
export const FENCED_WRITE = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local fence = tonumber(ARGV[1])
if fence < current then
  redis.call('RPUSH', KEYS[2], 'refused:' .. ARGV[2] .. ':' .. ARGV[1])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], 'ok:' .. ARGV[2] .. ':' .. ARGV[1])
return 1`;

export interface FencedWrite {
  accepted: boolean;
  writer: string;
  fence: number;
}

/** The log at `<key>:log`, parsed. */
export function parseLog(entries: string[]): FencedWrite[] {
  return entries.map((entry) => {
    const [status, writer, fence] = entry.split(':');
    return { accepted: status === 'ok', writer: writer ?? '', fence: Number(fence) };
  });
}

export function hostPort(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  return { host: text.slice(0, at), port: Number(text.slice(at + 1)) };
}
