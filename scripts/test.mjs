// `npm test`: everything CI checks, in order — Biome (format + lint), tsc (typecheck), vitest (every test).
//
// Every step runs even when an earlier one failed, so one run shows every problem. The very last line is
// always `N passed, N failed`: N passed counts test cases, N failed counts failed test cases plus every
// failed static check, test file that failed outside a test (import error, hook) or crashed vitest run,
// and every skipped or todo test (a focused `.only` fails its file: vitest runs with --allowOnly=false).
// The exit code is non-zero when anything failed.
//
// Tools run under this script's own Node (process.execPath), never whatever `node` PATH finds first, so
// `PATH=/path/to/node24/bin:$PATH npm test` runs the whole suite on Node 24.
// Extra arguments go to vitest: `npm test -- test/unit`.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = (path) => join(root, 'node_modules', path);

/** Runs `node <script> ...args` in the repo root with inherited stdio; resolves to the exit code. */
function run(title, script, args) {
  console.log(`\n> ${title}`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: root, stdio: 'inherit' });
    child.on('error', (error) => {
      console.error(`${title}: ${error.message}`);
      resolve(1);
    });
    child.on('close', (code, signal) => resolve(signal ? 1 : (code ?? 1)));
  });
}

/** Reads vitest's JSON report; returns undefined when vitest died before writing it. */
function readReport(file) {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

const started = Date.now();
console.log(`node ${process.version} (${process.execPath})`);

let passed = 0;
let failed = 0;
const problems = [];

for (const [title, script, args] of [
  ['biome check .', bin('@biomejs/biome/bin/biome'), ['check', '.']],
  ['tsc -p tsconfig.json --noEmit', bin('typescript/bin/tsc'), ['-p', 'tsconfig.json', '--noEmit']],
]) {
  const code = await run(title, script, args);
  if (code !== 0) {
    failed += 1;
    problems.push(`${title} failed (exit ${code})`);
  }
}

const reportDir = mkdtempSync(join(tmpdir(), 'oncely-test-'));
const reportFile = join(reportDir, 'vitest.json');
try {
  const code = await run('vitest run', bin('vitest/vitest.mjs'), [
    'run',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${reportFile}`,
    // A committed it.only / describe.only fails its file instead of silently skipping the rest of it.
    '--allowOnly=false',
    ...process.argv.slice(2),
  ]);
  const report = readReport(reportFile);
  if (report === undefined) {
    failed += 1;
    problems.push(`vitest exited ${code} without writing a report`);
  } else {
    passed += report.numPassedTests;
    failed += report.numFailedTests;
    // A file can fail with no failed test in it: an import error, a throwing beforeAll/afterAll.
    const brokenFiles = report.testResults.filter(
      (file) => file.status === 'failed' && !file.assertionResults.some((t) => t.status === 'failed'),
    );
    for (const file of brokenFiles) problems.push(`${file.name}: ${file.message || 'failed outside a test'}`);
    failed += brokenFiles.length;
    const skipped = report.numPendingTests + report.numTodoTests;
    // main holds no skipped, todo or focused test: each one counts as a failure, as in scripts/stress.mjs.
    if (skipped > 0) {
      failed += skipped;
      problems.push(`${skipped} test(s) skipped or todo`);
    }
    if (code !== 0 && report.numFailedTests === 0 && brokenFiles.length === 0) {
      // No test files, unhandled errors, a reporter crash: vitest failed without naming a test.
      failed += 1;
      problems.push(
        report.testResults.length === 0
          ? 'vitest found no test files'
          : `vitest exited ${code} with no failed test (unhandled error?)`,
      );
    }
  }
} finally {
  rmSync(reportDir, { recursive: true, force: true });
}

console.log('');
for (const problem of problems) console.log(`- ${problem}`);
console.log(`node ${process.version}, ${((Date.now() - started) / 1000).toFixed(1)}s`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
