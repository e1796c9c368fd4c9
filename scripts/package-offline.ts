/**
 * `npm run package:offline -- --stage prod`: `serverless package` for a stage with no AWS account, against the
 * local stand-in for SSM, CloudFormation and STS that the tests use (test/support/fake-aws.ts), so you can read the
 * CloudFormation template and the zips a deploy would upload.
 *
 *   npm run package:offline -- --stage prod [--out DIR]     default DIR: .serverless-offline/<stage>
 *
 * What needs an AWS account, and what this stands in for:
 * - `serverless package` reads the stage's SSM parameters that shape the template (for `vpc`: subnet ids,
 *   security group ids, the cluster's nodes, the Redis user) and asks CloudFormation whether the stack exists.
 *   Here the stand-in answers with placeholders (printed below): the template is real, those values are not.
 * - Secrets (tokens, passwords, webhook secrets) are read by the functions at run time, never at package time:
 *   the stand-in holds none.
 * - `serverless deploy` needs the account itself: nothing here deploys.
 *
 * The package is written into a temporary folder and moved to DIR only once it is whole: a failed run leaves
 * no partial zips behind (`serverless package` into `.serverless/` does, when it fails half-way).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { type FakeParameter, fakeAwsEnv, startFakeAws } from '../test/support/fake-aws.js';
import { buildLayer, layerDir, root } from './build.js';

const run = promisify(execFile);
const serverlessBin = join(root, 'node_modules/serverless/bin/serverless.js');
/** A bound only a hang reaches (a package is tens of seconds, minutes on a busy machine). */
const PACKAGE_TIMEOUT_MS = 600_000;

/** The placeholders the stand-in answers with: well-formed (cfn-lint checks ids), and not anyone's. */
export const PLACEHOLDERS: Readonly<Record<string, FakeParameter>> = {
  'subnet-ids': { type: 'StringList', value: 'subnet-0123456789abcdef0,subnet-0fedcba9876543210' },
  'security-group-ids': { type: 'StringList', value: 'sg-0123456789abcdef0' },
  'redis-cluster-nodes': { type: 'String', value: 'clustercfg.example.abc123.use1.cache.amazonaws.com:6379' },
  'redis-username': { type: 'String', value: 'oncely' },
};

/** Packages `stage` into `out` (replaced only on success); returns the files written. `parameters`: tests. */
export async function packageOffline(
  stage: string,
  out: string,
  parameters: Readonly<Record<string, FakeParameter>> = PLACEHOLDERS,
): Promise<string[]> {
  if (!/^[a-z][a-z0-9-]*$/.test(stage))
    throw new Error(`--stage must be a stage name like prod, got "${stage}"`);
  if (!existsSync(layerDir) || readdirSync(layerDir).length === 0) await buildLayer();
  const aws = await startFakeAws({
    parameters: (name) => parameters[name.slice(`/oncely/${stage}/`.length)],
  });
  mkdirSync(dirname(out), { recursive: true });
  const staging = mkdtempSync(join(dirname(out), `.${stage}-partial-`));
  try {
    await run(process.execPath, [serverlessBin, 'package', '--stage', stage, '--package', staging], {
      cwd: root,
      env: { ...fakeAwsEnv(aws.url, process.env.HOME ?? root), SLS_TELEMETRY_DISABLED: '1' },
      timeout: PACKAGE_TIMEOUT_MS,
    }).catch((err: { stdout?: string; stderr?: string; message: string }) => {
      throw new Error(
        `serverless package --stage ${stage} failed:\n${err.stdout ?? ''}${err.stderr ?? err.message}`,
      );
    });
    rmSync(out, { recursive: true, force: true });
    renameSync(staging, out);
    return readdirSync(out).sort();
  } finally {
    rmSync(staging, { recursive: true, force: true });
    await aws.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { stage: { type: 'string' }, out: { type: 'string' } } });
  if (!values.stage) throw new Error('usage: npm run package:offline -- --stage <stage> [--out DIR]');
  const out = resolve(values.out ?? join(root, '.serverless-offline', values.stage));
  const files = await packageOffline(values.stage, out);
  console.log(`packaged stage ${values.stage} offline into ${relative(process.cwd(), out) || out}:`);
  for (const f of files) console.log(`  ${f}`);
  console.log(
    `SSM values in the template are placeholders (${Object.keys(PLACEHOLDERS).join(', ')}): set them in SSM before a real deploy.`,
  );
}

const entry = process.argv[1];
if (entry && realpathSync(entry) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(`package:offline: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
  });
}
