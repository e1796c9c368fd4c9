// The TCP cold start phase by phase, in fresh processes: what bench/bundles.ts times as one `load + first`.
//
//   node bench/cold/phases.mjs <layer dist dir> <redis port> [processes=25] [label=entry bundle ...]
//
// <layer dist dir> is a built layer's nodejs/node_modules/oncely/dist (bench/bundles.ts buildBundles writes one
// under <out>/layer; scripts/build.ts buildLayer under dist/layer). Each process imports oncely/locks, then
// oncely/ioredis, then the ioredis chunk (otherwise loaded by the first redisStore()), creates the store and
// the lock, and times one tryAcquire and one release. Each `label=bundle` (bench/bundles.ts's entries, such
// as <out>/entries/redlock.mjs) runs through bench/cold/runner.mjs in the same rounds, interleaved, so its
// total can be set against the phases' sum. Prints the median of each figure, in ms.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [dist, port, processes = '25', ...entries] = process.argv.slice(2);
if (!dist || !port)
  throw new Error('usage: node bench/cold/phases.mjs <layer dist dir> <redis port> [n] [label=bundle ...]');

if (process.env.ONCELY_PHASES_CHILD) {
  const at = [performance.now()];
  const mark = () => at.push(performance.now());
  const { createLock } = await import(pathToFileURL(join(dist, 'locks.js')).href);
  mark();
  const { redisStore } = await import(pathToFileURL(join(dist, 'ioredis.js')).href);
  mark();
  const chunk = readdirSync(join(dist, 'chunks')).find((f) => f.startsWith('ioredis-'));
  if (chunk) await import(pathToFileURL(join(dist, 'chunks', chunk)).href);
  mark();
  const lock = createLock(redisStore({ host: '127.0.0.1', port: Number(port) }));
  mark();
  const lease = await lock.tryAcquire(process.env.ONCELY_PHASES_CHILD, { ttlMs: 10_000 });
  if (!lease) throw new Error('not acquired');
  mark();
  await lease.release();
  mark();
  const names = ['locks', 'ioredis entry', 'ioredis chunk', 'create', 'acquire', 'release'];
  process.stdout.write(JSON.stringify(Object.fromEntries(names.map((n, i) => [n, at[i + 1] - at[i]]))));
  process.exit(0);
}

const self = fileURLToPath(import.meta.url);
const runner = join(self, '..', 'runner.mjs');
const env = (key) => ({ ...process.env, NODE_OPTIONS: '', ...(key ? { ONCELY_PHASES_CHILD: key } : {}) });
const rows = new Map();
const add = (label, figures) => {
  const row = rows.get(label) ?? new Map();
  for (const [k, v] of Object.entries(figures)) row.set(k, [...(row.get(k) ?? []), v]);
  rows.set(label, row);
};
for (let i = 0; i < Number(processes); i++) {
  const phases = JSON.parse(execFileSync(process.execPath, [self, dist, port], { env: env(`phases-${i}`) }));
  add('oncely phases', { ...phases, total: Object.values(phases).reduce((a, b) => a + b, 0) });
  for (const spec of entries) {
    const [label, bundle] = spec.split('=');
    const cfg = JSON.stringify({ host: '127.0.0.1', port: Number(port), key: `phases-${label}-${i}` });
    const { load, first } = JSON.parse(execFileSync(process.execPath, [runner, bundle, cfg], { env: env() }));
    add(label, { load, first, total: load + first });
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
for (const [label, row] of rows) {
  console.log(`${label}: ${[...row].map(([k, xs]) => `${k} ${median(xs).toFixed(2)}`).join(', ')}`);
}
