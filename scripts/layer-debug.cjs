// The layer's `debug` (scripts/build.ts layerBuildOptions aliases the package to this file): what ioredis
// needs of debug 4 (built/utils/debug.js calls `debug.default(namespace)` and reads `enabled`, `namespace`,
// `log`, `destroy`), in 1 KiB rather than debug, supports-color and ms (10 KiB). ioredis behaves the same:
// its lines go to stderr when DEBUG names them (`DEBUG=ioredis:*`, comma or space separated, `*` wildcards,
// `-name` to skip), as debug writes them when stderr is not a terminal (ISO time, namespace, message); the
// colours and the "+12ms" suffix of a terminal are left out. DEBUG is read when a namespace is first made,
// as debug reads it at load.
'use strict';
const { formatWithOptions } = require('node:util');

const patterns = (process.env.DEBUG || '')
  .split(/[\s,]+/)
  .filter(Boolean)
  .map((p) => {
    const skip = p.startsWith('-');
    const text = skip ? p.slice(1) : p;
    const source = text.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*?');
    return { skip, re: new RegExp(`^${source}$`) };
  });

function enabledFor(namespace) {
  if (patterns.some((p) => p.skip && p.re.test(namespace))) return false;
  return patterns.some((p) => !p.skip && p.re.test(namespace));
}

function createDebug(namespace) {
  function debug(...args) {
    if (!debug.enabled) return;
    const line = formatWithOptions({ colors: false }, ...args);
    (debug.log || ((text) => process.stderr.write(`${text}\n`)))(
      `${new Date().toISOString()} ${namespace} ${line}`,
    );
  }
  debug.namespace = namespace;
  debug.enabled = enabledFor(namespace);
  debug.log = undefined;
  debug.destroy = () => false;
  return debug;
}

createDebug.default = createDebug;
createDebug.enabled = enabledFor;
module.exports = createDebug;
