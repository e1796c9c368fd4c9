// A fresh process for one cold start: import one minified bundle, complete its first lock, print the
// timings (ms) as JSON and exit. `boot` is Node's own start-up (process start to this line), the same for
// every bundle.
import { pathToFileURL } from 'node:url';

const boot = performance.now();
const [bundle, config] = process.argv.slice(2);
const mod = await import(pathToFileURL(bundle).href);
const loaded = performance.now();
await mod.firstLock(JSON.parse(config));
const done = performance.now();
process.stdout.write(JSON.stringify({ boot, load: loaded - boot, first: done - loaded }));
process.exit(0);
