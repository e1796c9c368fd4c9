// Runs a built Lambda handler as the Node.js runtime would, in this process: bare imports the handler's own
// folders do not resolve are looked up in the NODE_PATH directories (as the runtime does for a layer's
// /opt/nodejs/node_modules, ES modules included), the module is imported once (the cold start, timed), then
// the handler is invoked with each event in turn (warm invocations).
//
//   NODE_PATH=<layer>/nodejs/node_modules node lambda-runner.mjs <handler.mjs> <events.json>
//
// Prints one JSON line: { initMs, results: [{ ok, value } | { ok: false, error: { name, message } }] }, or
// { initError: { name, message } } when the import (the init phase) failed.

import { readFileSync } from 'node:fs';
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';

const HOOKS = `
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
const dirs = (process.env.NODE_PATH ?? '').split(':').filter(Boolean);
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || /^[./]|^[a-z]+:/.test(specifier)) throw err;
    for (const dir of dirs) {
      try {
        // As if imported from a file directly inside <dir>/.., whose node_modules is <dir>.
        return await next(specifier, { ...context, parentURL: pathToFileURL(join(dir, '..', 'index.mjs')).href });
      } catch {}
    }
    throw err;
  }
}
`;
register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, import.meta.url);

const [handlerFile, eventsFile] = process.argv.slice(2);
const events = JSON.parse(readFileSync(eventsFile, 'utf8'));
const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'function';

const started = performance.now();
let mod;
try {
  mod = await import(pathToFileURL(handlerFile).href);
} catch (err) {
  // The init phase failed: Lambda reports Runtime.ImportModuleError / the error, and no event runs.
  process.stdout.write(`${JSON.stringify({ initError: { name: err?.name, message: err?.message } })}\n`);
  process.exit(0);
}
const initMs = performance.now() - started;

const results = [];
for (const [i, event] of events.entries()) {
  const deadline = Date.now() + 60_000;
  const context = {
    functionName,
    functionVersion: '$LATEST',
    awsRequestId: `request-${i}`,
    invokedFunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:${functionName}`,
    memoryLimitInMB: '1024',
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };
  try {
    results.push({ ok: true, value: await mod.handler(event, context) });
  } catch (err) {
    results.push({ ok: false, error: { name: err?.name, message: err?.message } });
  }
}
process.stdout.write(`${JSON.stringify({ initMs, results })}\n`);
process.exit(0);
