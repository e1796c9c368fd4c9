/**
 * The examples' stand-in for a real side effect (charge a card, send an email, write a row): each execution
 * adds one to a counter per function and id, so `npm run demo` and the end-to-end tests can count how many
 * times the work actually ran — the number that must equal the number of distinct ids.
 *
 * Runs as a Lua script through the same oncely Store as everything else, so it works on every transport; one
 * hash per function, one hash tag, so it is cluster-safe.
 */
import { createHash } from 'node:crypto';
import type { Script, Store } from 'oncely';

/** How long the counters live: a day after the last execution. */
const RETENTION_MS = 86_400_000;

const script = (name: string, keys: number, lua: string): Script => ({
  name,
  keys,
  lua,
  sha1: createHash('sha1').update(lua).digest('hex'),
});

/** KEYS: the function's hash. ARGV: id, retentionMs. Returns how many times the id has run now. */
const RECORD = script(
  'example-effect-record',
  1,
  `local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n`,
);

/** KEYS: the function's hash. ARGV: ids. Returns each id's count (nil when it never ran). */
const COUNT = script('example-effect-count', 1, `return redis.call('HMGET', KEYS[1], unpack(ARGV))`);

const keyOf = (fn: string) => `oncely-examples:{${fn}}:effects`;

/** Records one execution of `fn`'s work for `id`; returns how many times that id has run, this one included. */
export async function recordEffect(store: Store, fn: string, id: string): Promise<number> {
  return Number(await store.run(RECORD, [keyOf(fn)], [id, RETENTION_MS]));
}

/** How many times `fn`'s work ran for each id (0 when never). */
export async function countEffects(
  store: Store,
  fn: string,
  ids: readonly string[],
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const BATCH = 500; // Lua unpack() has a stack limit; stay far below it
  for (let i = 0; i < ids.length; i += BATCH) {
    const slice = ids.slice(i, i + BATCH);
    const values = (await store.run(COUNT, [keyOf(fn)], slice)) as (string | number | null)[];
    slice.forEach((id, j) => {
      counts.set(id, Number(values[j] ?? 0));
    });
  }
  return counts;
}
