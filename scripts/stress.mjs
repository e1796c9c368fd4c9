// `npm run test:stress`: the integration tests on a busy machine. Two CPU-burning processes spin for the
// whole run (each a tight loop on one core; on a 2-core machine that is all of it), so every timer fires
// late and every child process starts slowly: a test that leans on wall-clock luck fails here.
//
// The burners stop by themselves after BURN_LIMIT_MS even if this script dies, and are killed by PID when
// vitest ends. Extra arguments go to vitest: `npm run test:stress -- test/integration/lock.test.ts`.
// The last line is `N passed, N failed`, and the exit code is non-zero when anything failed.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BURNERS = 2;
const BURN_LIMIT_MS = 30 * 60_000;

const root = fileURLToPath(new URL('..', import.meta.url));

/** One process that keeps one core busy until killed, or until BURN_LIMIT_MS have passed. */
function burner() {
  const code = `const end = Date.now() + ${BURN_LIMIT_MS}; let x = 0;
    while (Date.now() < end) { for (let i = 0; i < 1e6; i++) x = (x * 31 + i) % 1000003; }`;
  const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
  child.on('error', (error) => console.error(`burner: ${error.message}`));
  return child;
}

const burners = Array.from({ length: BURNERS }, burner);
const stopBurners = () => {
  for (const b of burners) {
    if (b.pid !== undefined && b.exitCode === null && b.signalCode === null) {
      try {
        process.kill(b.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
};
process.on('exit', stopBurners);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopBurners();
    process.exit(130);
  });
}
console.log(`${BURNERS} CPU burners running (pids ${burners.map((b) => b.pid).join(', ')})`);

const reportDir = mkdtempSync(join(tmpdir(), 'oncely-stress-'));
const reportFile = join(reportDir, 'vitest.json');
const started = Date.now();
const args = process.argv.slice(2);
const code = await new Promise((resolve) => {
  const child = spawn(
    process.execPath,
    [
      join(root, 'node_modules/vitest/vitest.mjs'),
      'run',
      ...(args.length > 0 ? args : ['test/integration']),
      '--reporter=default',
      '--reporter=json',
      `--outputFile.json=${reportFile}`,
      '--allowOnly=false',
    ],
    { cwd: root, stdio: 'inherit' },
  );
  child.on('error', () => resolve(1));
  child.on('close', (c, signal) => resolve(signal ? 1 : (c ?? 1)));
});
stopBurners();

let passed = 0;
let failed = 0;
if (existsSync(reportFile)) {
  const report = JSON.parse(readFileSync(reportFile, 'utf8'));
  passed = report.numPassedTests;
  failed = report.numFailedTests;
  // A file that failed outside a test (import error, a throwing hook) counts as a failure too.
  failed += report.testResults.filter(
    (file) => file.status === 'failed' && !file.assertionResults.some((t) => t.status === 'failed'),
  ).length;
  const skipped = report.numPendingTests + report.numTodoTests;
  if (skipped > 0) {
    console.log(`- ${skipped} test(s) skipped or todo`);
    failed += skipped;
  }
}
if (code !== 0 && failed === 0) failed = 1;
rmSync(reportDir, { recursive: true, force: true });
console.log(`stress: ${BURNERS} burners, ${((Date.now() - started) / 1000).toFixed(1)}s`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
