// `npm run build` + `serverless package` for every stage (local, prod: the default deploy stage, vpc), offline:
// the layer zip and one zip per function, checked entry by entry, and each packaged CloudFormation template
// checked as CloudFormation would: no dependency cycle, and cfn-lint (a missing cfn-lint fails the suite)
// reports no error. serverless package of a service with layers asks CloudFormation whether the stack exists
// (DescribeStacks) and SSM for the stage's parameters; a local stand-in answers (test/support/fake-aws.ts).
// It runs in a scratch copy of the service, because serverless writes .serverless/ and .esbuild/ next to
// serverless.yml.
//
// Then the built layer itself runs against a real redis-server: REST with ioredis removed from a copy of it (the
// REST path never loads ioredis), TCP with it.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { inflateRawSync } from 'node:zlib';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway } from '../../dev/gateway.js';
import { startRedis } from '../../dev/redis-server.js';
import { countEffects } from '../../functions/shared/effects.js';
import { signGithub, signStandardWebhook, signStripe } from '../../functions/webhook/signatures.js';
import { upstashStore } from '../../layers/oncely/src/index.js';
import { LOCK_SCRIPTS, ONCE_SCRIPTS } from '../../layers/oncely/src/scripts.js';
import { buildFunctions, buildLayer, functionNames, layerPackagePath } from '../../scripts/build.js';
import { cfnLint, dependencyCycles, type LintReport, type Template } from '../support/cloudformation.js';
import { type FakeAws, type FakeParameter, fakeAwsEnv, startFakeAws } from '../support/fake-aws.js';

/** Size budgets of the deployment artifacts (zip bytes). */
const BUDGET = {
  /**
   * The whole layer: the oncely package bundled with its dependencies inlined (minified, no source maps, .d.ts,
   * the inlined packages' licences): 257 KiB when this was set; 527 KiB when it carried its dependencies as
   * published.
   */
  layerZipBytes: 320 * 1024,
  /**
   * What a cold start parses on the REST path through the whole index: the entry, its static chunks and the
   * REST client's chunk (oncely's requester and @upstash/redis, minified), unzipped: 202 KiB when this was set
   * (99 KiB of it the client's chunk); 276 KiB with @upstash/redis as published. ioredis's chunk (199 KiB)
   * would break it.
   */
  restPathBytes: 224 * 1024,
  /** One function: its own code only. */
  functionZipBytes: 16 * 1024,
};

/** Strings only the layer's code contains: the first line of each of its Lua scripts, and ioredis. */
const LAYER_MARKERS = [
  ...[...LOCK_SCRIPTS, ...ONCE_SCRIPTS].map((s) => s.lua.split('\n')[0]!),
  'ClusterAllFailedError', // ioredis
];

const root = fileURLToPath(new URL('../..', import.meta.url));

interface ZipEntry {
  name: string;
  data: Buffer;
}

/** Reads every entry of a zip file (stored or deflated), from its central directory. */
function readZip(file: string): ZipEntry[] {
  const zip = readFileSync(file);
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error(`${file}: not a zip`);
  const count = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    const method = zip.readUInt16LE(p + 10);
    const compressed = zip.readUInt32LE(p + 20);
    const nameLength = zip.readUInt16LE(p + 28);
    const extraLength = zip.readUInt16LE(p + 30);
    const commentLength = zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const name = zip.toString('utf8', p + 46, p + 46 + nameLength);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const raw = zip.subarray(start, start + compressed);
    entries.push({ name, data: method === 8 ? inflateRawSync(raw) : raw });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

const names = functionNames();
const scratch = mkdtempSync(join(tmpdir(), 'oncely-package-'));
const STAGES = ['local', 'prod', 'vpc'] as const;
type Stage = (typeof STAGES)[number];
const serverlessBin = join(root, 'node_modules/serverless/bin/serverless.js');

/** The SSM parameters that hold secrets, per stage: read at run time only, never by `serverless package`. */
const SECRET_PARAMETERS = [
  'upstash-url',
  'upstash-token',
  'redis-auth-token',
  'github-webhook-secret',
  'stripe-webhook-secret',
  'standard-webhook-secret',
];
/** A fresh random value per secret parameter of every stage: none may appear in any packaged artefact. */
const secretValues = new Map(
  ['local', 'prod', 'vpc'].flatMap((stage) =>
    SECRET_PARAMETERS.map((n) => [
      `/oncely/${stage}/${n}`,
      `oncely-test-secret-${randomBytes(12).toString('hex')}`,
    ]),
  ),
);

/** What the stand-in SSM holds: the secrets above, and well-formed VPC settings (cfn-lint checks ids). */
function parameter(name: string): FakeParameter | undefined {
  const secret = secretValues.get(name);
  if (secret !== undefined) return { value: secret };
  if (name.endsWith('/subnet-ids')) {
    return { type: 'StringList', value: 'subnet-0123456789abcdef0,subnet-0fedcba9876543210' };
  }
  if (name.endsWith('/security-group-ids')) return { type: 'StringList', value: 'sg-0123456789abcdef0' };
  if (name.endsWith('/redis-cluster-nodes')) {
    return { type: 'String', value: 'clustercfg.oncely.abc123.use1.cache.amazonaws.com:6379' };
  }
  if (name.endsWith('/redis-username')) return { type: 'String', value: 'oncely' };
  return undefined;
}

const fakeAws: Partial<Record<Stage, FakeAws>> = {};
const templates: Partial<Record<Stage, Template>> = {};
const templateFiles: Partial<Record<Stage, string>> = {};
/** The zips of the prod package. */
let zips: Record<string, ZipEntry[]> = {};
let zipBytes: Record<string, number> = {};
let builtFunctions: Record<string, string> = {};

/** What `serverless package` before `npm run build` did: its error output and how long it took. */
let beforeBuild: { failed: boolean; output: string; ms: number } | undefined;
/** cfn-lint's findings per stage. */
const lint: Partial<Record<Stage, LintReport>> = {};

function serverless(args: string[], env: Record<string, string>, timeoutMs: number) {
  return promisify(execFile)(process.execPath, [serverlessBin, ...args], {
    cwd: scratch,
    env,
    timeout: timeoutMs,
  });
}

/** `serverless package --stage <stage>` into `<scratch>/.serverless-<stage>`, against its own stand-in. */
async function packageStage(stage: Stage): Promise<string> {
  const aws = await startFakeAws({ parameters: parameter });
  fakeAws[stage] = aws;
  const out = join(scratch, `.serverless-${stage}`);
  await serverless(['package', '--stage', stage, '--package', out], fakeAwsEnv(aws.url, scratch), 300_000);
  const file = join(out, 'cloudformation-template-update-stack.json');
  templateFiles[stage] = file;
  templates[stage] = JSON.parse(readFileSync(file, 'utf8')) as Template;
  return out;
}

beforeAll(async () => {
  for (const path of [
    'serverless.yml',
    'package.json',
    'tsconfig.json',
    'functions',
    'layers',
    'scripts/serverless-require-build.cjs',
  ]) {
    cpSync(join(root, path), join(scratch, path), { recursive: true });
  }
  symlinkSync(join(root, 'node_modules'), join(scratch, 'node_modules'), 'dir');

  // Before the build: refused at once (it used to print "No file matches include / exclude patterns" and hang;
  // the timeout turns a hang into a failure).
  {
    const aws = await startFakeAws({ parameters: parameter });
    const started = performance.now();
    try {
      // A bound that only a hang reaches, even on a busy machine (npm run test:stress): "at once" is
      // checked by the message, the refusal says what to do.
      await serverless(['package', '--stage', 'prod'], fakeAwsEnv(aws.url, scratch), 300_000);
      beforeBuild = { failed: false, output: '', ms: performance.now() - started };
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; killed?: boolean };
      beforeBuild = {
        failed: !e.killed,
        output: `${e.stdout ?? ''}${e.stderr ?? ''}`,
        ms: performance.now() - started,
      };
    } finally {
      await aws.close();
    }
  }

  await buildLayer(join(scratch, 'dist/layer'));
  const functionFiles = await buildFunctions(join(scratch, 'dist/functions'));
  builtFunctions = Object.fromEntries(
    functionFiles
      .filter((f) => f.path.endsWith('.mjs'))
      .map((f) => [f.path.split('/')[0]!, readFileSync(join(scratch, 'dist/functions', f.path), 'utf8')]),
  );

  // One at a time: two osls processes at once are too many for two cores.
  let out = '';
  for (const stage of STAGES) {
    const dir = await packageStage(stage);
    if (stage === 'prod') out = dir;
  }
  for (const file of readdirSync(out).filter((f) => f.endsWith('.zip'))) {
    zips[file] = readZip(join(out, file));
    zipBytes[file] = readFileSync(join(out, file)).length;
  }
  for (const stage of STAGES) lint[stage] = await cfnLint(templateFiles[stage]!);
  // Three packages, a build and cfn-lint: minutes on a busy machine (npm run test:stress), so a generous bound.
}, 900_000);

afterAll(async () => {
  await Promise.all(Object.values(fakeAws).map((aws) => aws.close()));
  rmSync(scratch, { recursive: true, force: true });
  zips = {};
  zipBytes = {};
});

describe('serverless package before npm run build', () => {
  it('fails at once, saying to build first', () => {
    const ms = Math.round(beforeBuild?.ms ?? 0);
    expect(beforeBuild?.failed, `after ${ms} ms (killed at the timeout?): ${beforeBuild?.output}`).toBe(true);
    expect(beforeBuild?.output).toMatch(
      /layer "oncely" \(.*dist\/layer\) is not built: run `npm run build` first/,
    );
    expect(beforeBuild?.output).not.toContain('No file matches');
  });
});

/** Every IAM policy statement of a role resource. */
function statementsOf(template: Template, roleId: string): Record<string, unknown>[] {
  const props = template.Resources[roleId]?.Properties as
    | { Policies?: { PolicyDocument: { Statement: Record<string, unknown>[] } }[] }
    | undefined;
  return (props?.Policies ?? []).flatMap((p) => p.PolicyDocument.Statement);
}

const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v]);

/** Adds a statement to the first policy of a role resource. */
function grant(template: Template, roleId: string, statement: Record<string, unknown>): void {
  const props = template.Resources[roleId]!.Properties as {
    Policies: { PolicyDocument: { Statement: Record<string, unknown>[] } }[];
  };
  props.Policies[0]!.PolicyDocument.Statement.push(statement);
}

describe.each(STAGES)('the %s template', (stage) => {
  it('has no dependency cycle (Ref, Fn::GetAtt, Fn::Sub, DependsOn)', () => {
    expect(dependencyCycles(templates[stage]!)).toEqual([]);
  });

  it('passes cfn-lint with no error; its warnings are listed', () => {
    const report = lint[stage]!;
    // A missing cfn-lint fails here, locally as in CI: a lint that did not run is not a pass.
    expect(report.ran, 'cfn-lint is not on PATH (pip install cfn-lint)').toBe(true);
    for (const w of report.warnings) console.log(`cfn-lint ${stage}: ${w.rule} ${w.message} (${w.path})`);
    expect(report.errors.map((e) => `${e.rule} ${e.message} (${e.path})`)).toEqual([]);
  });

  it('dispatch alone may invoke a function, and only the worker, by name', () => {
    const template = templates[stage]!;
    const roles = Object.entries(template.Resources)
      .filter(([, r]) => r.Type === 'AWS::IAM::Role')
      .map(([id]) => id);
    const invokers = roles.filter((id) =>
      statementsOf(template, id).some((s) => asList(s.Action).some((a) => String(a).startsWith('lambda:'))),
    );
    expect(invokers).toEqual(['DispatchRole']);
    const invoke = statementsOf(template, 'DispatchRole').filter((s) =>
      asList(s.Action).includes('lambda:InvokeFunction'),
    );
    expect(invoke).toEqual([
      {
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: {
          'Fn::Sub': `arn:\${AWS::Partition}:lambda:\${AWS::Region}:\${AWS::AccountId}:function:oncely-${stage}-worker`,
        },
      },
    ]);
    const roleOf = (fn: string) =>
      (template.Resources[`${fn}LambdaFunction`]!.Properties as { Role: unknown }).Role;
    expect(roleOf('Dispatch')).toEqual({ 'Fn::GetAtt': ['DispatchRole', 'Arn'] });
    expect(roleOf('Webhook')).toEqual({ 'Fn::GetAtt': ['WebhookRole', 'Arn'] });
    for (const fn of ['Tick', 'Worker', 'Queue']) {
      expect(roleOf(fn)).toEqual({ 'Fn::GetAtt': ['IamRoleLambdaExecution', 'Arn'] });
    }
    // No statement of any role is granted on every resource.
    for (const id of roles) {
      for (const s of statementsOf(template, id)) expect(asList(s.Resource)).not.toContain('*');
    }
  });

  it('names its secrets as SSM parameters and grants each role ssm:GetParameters + kms:Decrypt on exactly those', () => {
    const template = templates[stage]!;
    const functions = Object.entries(template.Resources).filter(
      ([, r]) => r.Type === 'AWS::Lambda::Function',
    );
    const wantedByRole = new Map<string, Set<string>>();
    for (const [, fn] of functions) {
      const props = fn.Properties as {
        Role: { 'Fn::GetAtt': [string, string] };
        Environment: { Variables: Record<string, string> };
      };
      const role = props.Role['Fn::GetAtt'][0];
      const names = Object.entries(props.Environment.Variables)
        .filter(([k, v]) => k.endsWith('_SSM_PARAMETER') && v !== '')
        .map(([, v]) => v);
      wantedByRole.set(role, new Set([...(wantedByRole.get(role) ?? []), ...names]));
    }
    const expected = {
      local: { IamRoleLambdaExecution: [], WebhookRole: [], DispatchRole: [] },
      prod: {
        IamRoleLambdaExecution: ['upstash-token', 'upstash-url'],
        WebhookRole: [
          'github-webhook-secret',
          'standard-webhook-secret',
          'stripe-webhook-secret',
          'upstash-token',
          'upstash-url',
        ],
        DispatchRole: [],
      },
      vpc: {
        IamRoleLambdaExecution: ['redis-auth-token'],
        WebhookRole: [
          'github-webhook-secret',
          'redis-auth-token',
          'standard-webhook-secret',
          'stripe-webhook-secret',
        ],
        DispatchRole: [],
      },
    }[stage];
    const parameterOf = (arn: unknown) => {
      const text = (arn as { 'Fn::Sub': string })['Fn::Sub'];
      expect(text).toMatch(
        /^arn:\$\{AWS::Partition\}:ssm:\$\{AWS::Region\}:\$\{AWS::AccountId\}:parameter\//,
      );
      return text.slice(text.indexOf(':parameter/') + ':parameter'.length);
    };
    for (const [role, short] of Object.entries(expected)) {
      const wanted = [...(wantedByRole.get(role) ?? [])].sort();
      expect(wanted, `${role} environment`).toEqual(short.map((n) => `/oncely/${stage}/${n}`));
      const statements = statementsOf(template, role);
      const ssm = statements.filter((st) => asList(st.Action).some((a) => String(a).startsWith('ssm:')));
      const kms = statements.filter((st) => asList(st.Action).some((a) => String(a).startsWith('kms:')));
      if (wanted.length === 0) {
        expect([...ssm, ...kms], `${role} reads no parameter`).toEqual([]);
        continue;
      }
      expect(ssm.map((st) => asList(st.Action))).toEqual([['ssm:GetParameters']]);
      expect(asList(ssm[0]!.Resource).map(parameterOf).sort()).toEqual(wanted);
      expect(kms.map((st) => asList(st.Action))).toEqual([['kms:Decrypt']]);
      const condition = (kms[0]!.Condition as { StringEquals: Record<string, unknown> }).StringEquals;
      // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation's Fn::Sub syntax
      expect(condition['kms:ViaService']).toEqual({ 'Fn::Sub': 'ssm.${AWS::Region}.amazonaws.com' });
      expect(asList(condition['kms:EncryptionContext:PARAMETER_ARN']).map(parameterOf).sort()).toEqual(
        wanted,
      );
    }
  });

  it('exports the layer version ARN as oncely-<stage>-layer-arn', () => {
    expect(templates[stage]!.Outputs?.OncelyLayerArn).toEqual({
      Description: 'The oncely Lambda layer version of this stage',
      Value: { Ref: 'OncelyLambdaLayer' },
      Export: { Name: `oncely-${stage}-layer-arn` },
    });
  });
});

describe('the template checks', () => {
  it('find the cycle of a shared role granted on !GetAtt WorkerLambdaFunction.Arn (cfn-lint E3004)', async () => {
    const template = structuredClone(templates.prod!);
    grant(template, 'IamRoleLambdaExecution', {
      Effect: 'Allow',
      Action: 'lambda:InvokeFunction',
      Resource: { 'Fn::GetAtt': ['WorkerLambdaFunction', 'Arn'] },
    });
    expect(dependencyCycles(template)).toEqual([['IamRoleLambdaExecution', 'WorkerLambdaFunction']]);
    // The same reference written as a Fn::Sub is a cycle too.
    const viaSub = structuredClone(templates.prod!);
    grant(viaSub, 'IamRoleLambdaExecution', {
      Effect: 'Allow',
      Action: 'lambda:InvokeFunction',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation's Fn::Sub syntax
      Resource: { 'Fn::Sub': '${WorkerLambdaFunction.Arn}' },
    });
    expect(dependencyCycles(viaSub)).toEqual([['IamRoleLambdaExecution', 'WorkerLambdaFunction']]);

    const file = join(scratch, 'cyclic-template.json');
    writeFileSync(file, JSON.stringify(template, null, 2));
    const report = await cfnLint(file);
    expect(report.ran, 'cfn-lint is not on PATH (pip install cfn-lint)').toBe(true);
    expect(report.errors.map((e) => e.rule)).toContain('E3004');
    // cfn-lint takes seconds, and a minute or more on a busy machine (npm run test:stress).
  }, 300_000);
});

/** Every packaged file of every stage as text, zips entry by entry (inflated): templates, state, code, maps. */
function packagedArtefacts(): { where: string; text: string }[] {
  return STAGES.flatMap((stage) => {
    const dir = join(scratch, `.serverless-${stage}`);
    return readdirSync(dir).flatMap((file) =>
      file.endsWith('.zip')
        ? readZip(join(dir, file)).map((e) => ({
            where: `${stage}/${file}:${e.name}`,
            text: e.data.toString('utf8'),
          }))
        : [{ where: `${stage}/${file}`, text: readFileSync(join(dir, file), 'utf8') }],
    );
  });
}

describe('no secret in any packaged artefact', () => {
  it('no SSM secret value is in a template, the state file, a function zip or the layer zip, on any stage', () => {
    const artefacts = packagedArtefacts();
    // What the scan covers: every stage's templates and zips, the secrets' parameter names among them.
    for (const stage of STAGES) {
      expect(artefacts.some((a) => a.where === `${stage}/cloudformation-template-update-stack.json`)).toBe(
        true,
      );
      expect(artefacts.some((a) => a.where.startsWith(`${stage}/oncely.zip:`))).toBe(true);
      expect(artefacts.some((a) => a.where.startsWith(`${stage}/webhook.zip:`))).toBe(true);
    }
    expect(artefacts.some((a) => a.text.includes('/oncely/prod/upstash-token'))).toBe(true);
    const leaks = [...secretValues].flatMap(([name, value]) =>
      artefacts.filter((a) => a.text.includes(value)).map((a) => `${name} in ${a.where}`),
    );
    expect(leaks).toEqual([]);
  });

  it("serverless package read no secret parameter from SSM, on any stage (only the vpc stage's settings)", () => {
    const ssm = (stage: Stage) =>
      [...new Set(fakeAws[stage]!.requests.filter((r) => r.startsWith('ssm:')))].sort();
    expect(ssm('local')).toEqual([]);
    expect(ssm('prod')).toEqual([]);
    expect(ssm('vpc')).toEqual([
      'ssm:GetParameter:/oncely/vpc/redis-cluster-nodes',
      'ssm:GetParameter:/oncely/vpc/redis-username',
      'ssm:GetParameter:/oncely/vpc/security-group-ids',
      'ssm:GetParameter:/oncely/vpc/subnet-ids',
    ]);
  });
});

describe('serverless package --stage prod', () => {
  it('asked CloudFormation whether the stack exists, and SSM for no secret', () => {
    expect(fakeAws.prod?.requests).toContain('cloudformation:DescribeStacks');
    expect(fakeAws.prod?.requests.filter((r) => r.startsWith('ssm:'))).toEqual([]);
  });

  it('produces the layer zip and one zip per function, nothing else', () => {
    expect(Object.keys(zips).sort()).toEqual(['oncely.zip', ...names.map((n) => `${n}.zip`)].sort());
  });

  it('the layer unpacks to /opt/nodejs/node_modules/oncely: one bundle (minified ESM, dependencies inlined, no sources, no source maps, .d.ts) and the licences of what it inlined', async () => {
    const layer = zips['oncely.zip']!;
    // oncely alone: its dependencies are inside its bundle, not next to it.
    for (const entry of layer) expect(entry.name.startsWith(`${layerPackagePath}/`), entry.name).toBe(true);
    const manifest = JSON.parse(
      layer.find((e) => e.name === `${layerPackagePath}/package.json`)!.data.toString(),
    ) as { name: string; type: string; exports: Record<string, unknown>; dependencies?: unknown };
    expect(manifest).toMatchObject({
      name: 'oncely',
      type: 'module',
      exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' } },
    });
    expect(manifest.dependencies).toBeUndefined();
    const has = (name: string) => layer.some((e) => e.name === name);
    for (const entry of ['index', 'locks', 'middy', 'ioredis']) {
      expect(has(`${layerPackagePath}/dist/${entry}.js`), entry).toBe(true);
      expect(has(`${layerPackagePath}/dist/${entry}.d.ts`), entry).toBe(true);
    }
    // No source maps (not even declaration maps): a map could only name sources the layer does not carry.
    // The functions' own maps are in their zips.
    expect(
      layer.filter((e) => /\.map$|\.ts$/.test(e.name) && !e.name.endsWith('.d.ts')).map((e) => e.name),
    ).toEqual([]);
    const code = layer.filter((e) => e.name.endsWith('.js')).map((e) => e.data.toString());
    for (const js of code) expect(js).not.toContain('sourceMappingURL');
    // Minified: no comments left, and whole modules on one line (Lua in template literals keeps its newlines).
    for (const js of code) expect(js).not.toMatch(/\/\*\*|^\s*\/\/(?!\/usr\/bin\/env)/m);
    const longest = Math.max(...code.flatMap((js) => js.split('\n').map((line) => line.length)));
    expect(longest).toBeGreaterThan(10_000);
    // Dependencies inlined: the only modules the layer's code imports by name (esbuild reads its imports and
    // requires) are Node's, the AWS SDK (the runtime's) and pg (the function's own, for oncely/effects/pg).
    const dist = join(scratch, 'dist/layer', layerPackagePath, 'dist');
    const { metafile } = await build({
      entryPoints: layer
        .filter((e) => e.name.endsWith('.js'))
        .map((e) => join(dist, e.name.slice(`${layerPackagePath}/dist/`.length))),
      bundle: true,
      write: false,
      metafile: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      packages: 'external',
      outdir: join(scratch, 'imports-of-the-layer'),
      logLevel: 'silent',
    });
    const bare = new Set(
      Object.values(metafile.inputs).flatMap((input) =>
        input.imports.filter((i) => i.external).map((i) => i.path),
      ),
    );
    expect(bare.has('node:crypto')).toBe(true); // it does read them
    expect(
      [...bare].filter((m) => !/^node:|^@aws-sdk\/|^pg$/.test(m) && !builtinModules.includes(m)),
    ).toEqual([]);
    for (const dep of ['@upstash/redis', 'ioredis', '@aws-lambda-powertools/jmespath']) {
      expect(bare.has(dep), dep).toBe(false);
    }
    const licences = layer.find((e) => e.name === `${layerPackagePath}/THIRD-PARTY-LICENSES.txt`)!;
    for (const dep of ['@upstash/redis', 'ioredis', '@aws-lambda-powertools/jmespath', 'denque']) {
      expect(licences.data.toString()).toMatch(new RegExp(`^${dep} \\d+\\.\\d+\\.\\d+$`, 'm'));
    }
    // ioredis's debug is the layer's stand-in (scripts/layer-debug.cjs), not debug with supports-color and ms.
    for (const dep of ['debug', 'supports-color', 'ms']) {
      expect(licences.data.toString()).not.toMatch(new RegExp(`^${dep} \\d+\\.\\d+\\.\\d+$`, 'm'));
    }
    // The Lua scripts are in the layer: the same markers that must never appear in a function.
    const all = layer.map((e) => e.data.toString()).join('\n');
    for (const marker of LAYER_MARKERS) expect(all.includes(marker), `layer lacks ${marker}`).toBe(true);
  });

  it('the function zips hold only their own bundle, with oncely left to the layer', () => {
    for (const name of names) {
      const entries = zips[`${name}.zip`]!;
      expect(entries.map((e) => e.name).sort()).toEqual([
        `functions/${name}/handler.mjs`,
        `functions/${name}/handler.mjs.map`,
      ]);
      const code = entries.find((e) => e.name.endsWith('.mjs'))!.data.toString();
      for (const marker of LAYER_MARKERS)
        expect(code, `${name} bundles layer code (${marker})`).not.toContain(marker);
      // The AWS SDK comes with the Lambda runtime: imported, never bundled.
      if (name === 'dispatch') expect(code).toMatch(/from\s*"@aws-sdk\/client-lambda"/);
    }
  });

  it('npm run build bundles each function the same way: no layer code, oncely imported from the layer', () => {
    expect(Object.keys(builtFunctions).sort()).toEqual(names);
    for (const [name, code] of Object.entries(builtFunctions)) {
      for (const marker of LAYER_MARKERS)
        expect(code, `${name} bundles layer code (${marker})`).not.toContain(marker);
      if (
        /layers\/oncely\/src|from 'oncely'/.test(
          readFileSync(join(root, 'functions', name, 'handler.ts'), 'utf8'),
        )
      ) {
        expect(code).toMatch(/from\s*"oncely"/);
      }
    }
  });

  it(`stays within the size budgets (layer ${BUDGET.layerZipBytes / 1024} KiB, function ${BUDGET.functionZipBytes / 1024} KiB, REST path ${BUDGET.restPathBytes / 1024} KiB)`, () => {
    expect(zipBytes['oncely.zip']).toBeLessThanOrEqual(BUDGET.layerZipBytes);
    for (const name of names) expect(zipBytes[`${name}.zip`]).toBeLessThanOrEqual(BUDGET.functionZipBytes);
    const layer = zips['oncely.zip']!;
    const restPath = [...loadedFrom(layer, 'index.js', (chunk) => chunk.startsWith('chunks/upstash-http-'))];
    // The REST client's chunk, loaded when the store is created; ioredis's, JMESPath's and the SSM client's
    // are not (each is reached only through an import() this path does not take).
    expect(restPath.some((f) => f.startsWith('chunks/upstash-http-'))).toBe(true);
    const js = (f: string) => layer.find((e) => e.name === `${layerPackagePath}/dist/${f}`)!.data;
    expect(restPath.filter((f) => js(f).includes('ClusterAllFailedError'))).toEqual([]);
    const restBytes = restPath.reduce((sum, f) => sum + js(f).length, 0);
    expect(restBytes).toBeLessThanOrEqual(BUDGET.restPathBytes);
  });
});

/**
 * The files of the layer's `dist/` a process loads when it imports `entry`: static imports always, an import()
 * only where `follow` says this path takes it.
 */
function loadedFrom(layer: ZipEntry[], entry: string, follow: (file: string) => boolean): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const code = layer.find((e) => e.name === `${layerPackagePath}/dist/${file}`)!.data.toString();
    for (const m of code.matchAll(/(\bfrom\s*|\bimport\s*|\bimport\()"(\.\.?\/[^"]+)"/g)) {
      const target = join(dirname(file), m[2]!);
      if (m[1] !== 'import(' || follow(target)) visit(target);
    }
  };
  visit(entry);
  return seen;
}

describe('the built layer', () => {
  it('runs a lock over REST without the chunk that holds ioredis, and over TCP with it, with no ioredis installed', async () => {
    const modules = join(scratch, 'dist/layer/nodejs/node_modules');
    // Copies outside the scratch folder (whose node_modules would resolve the repo's packages): the layer
    // whole, and the layer without the chunk that holds ioredis.
    const full = mkdtempSync(join(tmpdir(), 'oncely-layer-'));
    cpSync(modules, join(full, 'node_modules'), { recursive: true });
    const chunks = join(full, 'node_modules/oncely/dist/chunks');
    const ioredisChunks = readdirSync(chunks).filter((f) =>
      readFileSync(join(chunks, f), 'utf8').includes('ClusterAllFailedError'),
    );
    expect(ioredisChunks).toHaveLength(1);
    const copy = mkdtempSync(join(tmpdir(), 'oncely-rest-only-'));
    cpSync(join(full, 'node_modules'), join(copy, 'node_modules'), {
      recursive: true,
      filter: (src) => !src.endsWith(`/chunks/${ioredisChunks[0]}`),
    });
    const index = join(full, 'node_modules/oncely/dist/index.js');
    const restOnlyIndex = join(copy, 'node_modules/oncely/dist/index.js');
    // Nothing but the layer itself: no ioredis or @upstash/redis for Node to find.
    for (const from of [index, restOnlyIndex]) {
      for (const dep of ['ioredis', '@upstash/redis']) {
        expect(() => createRequire(from).resolve(dep)).toThrow(/Cannot find module/);
      }
    }

    const redis = await startRedis();
    const gateway = await startGateway({
      redis: { host: redis.host, port: redis.port },
      token: 'package-test',
    });
    try {
      const restOnly = (await import(pathToFileURL(restOnlyIndex).href)) as typeof import('oncely');
      const rest = restOnly.fromEnv({
        UPSTASH_REDIS_REST_URL: gateway.url,
        UPSTASH_REDIS_REST_TOKEN: 'package-test',
      });
      const lease = await restOnly.createLock(rest).tryAcquire('built-layer', { ttlMs: 5_000 });
      expect(lease?.fence).toBeGreaterThan(0);
      // The same copy cannot do TCP: the chunk it would load is gone. So REST above never needed it.
      const tcpOnCopy = restOnly.fromEnv({ ONCELY_REDIS_URL: redis.url });
      await expect(
        restOnly.createLock(tcpOnCopy).tryAcquire('built-layer-2', { ttlMs: 5_000 }),
      ).rejects.toThrow(/the TCP transport could not load ioredis: Cannot find module/);

      const layer = (await import(pathToFileURL(index).href)) as typeof import('oncely');
      const tcp = layer.fromEnv({ ONCELY_REDIS_URL: redis.url });
      expect(await layer.createLock(tcp).tryAcquire('built-layer', { ttlMs: 5_000 })).toBeNull(); // held over REST
      expect(await lease!.release()).toBe('released');
      const next = await layer.createLock(tcp).tryAcquire('built-layer', { ttlMs: 5_000 });
      expect(next?.fence).toBeGreaterThan(lease!.fence);
      await tcp.close();
      // oncely/ioredis, the entry a TCP function imports, over the same chunk: a Cluster too.
      const { redisStore } = (await import(
        pathToFileURL(join(full, 'node_modules/oncely/dist/ioredis.js')).href
      )) as typeof import('oncely/ioredis');
      const store = redisStore({ url: redis.url });
      const again = await layer.createLock(store).tryAcquire('built-layer-3', { ttlMs: 5_000 });
      expect(await again!.release()).toBe('released');
      await store.close();
    } finally {
      await gateway.close();
      await redis.stop();
      rmSync(copy, { recursive: true, force: true });
      rmSync(full, { recursive: true, force: true });
    }
  });
});

/** Writes a zip's entries under `dir`, as Lambda unpacks a function to /var/task and a layer to /opt. */
function unzipTo(entries: ZipEntry[], dir: string): void {
  for (const e of entries) {
    mkdirSync(dirname(join(dir, e.name)), { recursive: true });
    writeFileSync(join(dir, e.name), e.data);
  }
}

interface RunnerOutput {
  initMs?: number;
  initError?: { name: string; message: string };
  results?: ({ ok: true; value: unknown } | { ok: false; error: { name: string; message: string } })[];
}

describe('prod functions, unpacked from their zips with the layer zip', () => {
  const lambdaDir = mkdtempSync(join(tmpdir(), 'oncely-lambda-'));
  afterAll(() => rmSync(lambdaDir, { recursive: true, force: true }));

  /**
   * Runs `<fn>.zip`'s handler with oncely.zip on NODE_PATH, in the environment the prod template gives it, with
   * SSM answered by a stand-in holding `parameters`: the cold start, then each event.
   */
  async function runFunction(fn: string, parameters: Record<string, FakeParameter>, events: unknown[]) {
    if (!existsSync(join(lambdaDir, 'opt'))) unzipTo(zips['oncely.zip']!, join(lambdaDir, 'opt'));
    if (!existsSync(join(lambdaDir, fn))) unzipTo(zips[`${fn}.zip`]!, join(lambdaDir, fn));
    const logicalId = `${fn[0]!.toUpperCase()}${fn.slice(1)}LambdaFunction`;
    const aws = await startFakeAws({ parameters });
    try {
      const vars = (
        templates.prod!.Resources[logicalId]!.Properties as {
          Environment: { Variables: Record<string, string> };
        }
      ).Environment.Variables;
      const eventsFile = join(lambdaDir, `events-${randomBytes(4).toString('hex')}.json`);
      writeFileSync(eventsFile, JSON.stringify(events));
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [
          join(root, 'test/support/lambda-runner.mjs'),
          join(lambdaDir, fn, `functions/${fn}/handler.mjs`),
          eventsFile,
        ],
        {
          env: {
            ...fakeAwsEnv(aws.url, lambdaDir),
            ...vars,
            AWS_LAMBDA_FUNCTION_NAME: `oncely-prod-${fn}`,
            // The layer, then the AWS SDK the Lambda runtime ships (here: the repo's).
            NODE_PATH: `${join(lambdaDir, 'opt/nodejs/node_modules')}:${join(root, 'node_modules')}`,
          },
          timeout: 60_000,
        },
      );
      return { out: JSON.parse(stdout.trim().split('\n').at(-1)!) as RunnerOutput, requests: aws.requests };
    } finally {
      await aws.close();
    }
  }

  it('reads the Upstash URL and token from SSM once, at cold start, and runs each item once', async () => {
    const redis = await startRedis();
    const token = `oncely-test-secret-${randomBytes(12).toString('hex')}`;
    const gateway = await startGateway({ redis: { host: redis.host, port: redis.port }, token });
    try {
      const { out, requests } = await runFunction(
        'worker',
        {
          '/oncely/prod/upstash-url': { value: gateway.url },
          '/oncely/prod/upstash-token': { value: token },
        },
        [{ id: 'item-1' }, { id: 'item-1' }, { id: 'item-2' }],
      );
      expect(out.initError).toBeUndefined();
      console.log(
        `worker cold start (module import, SSM client load, one GetParameters): ${out.initMs!.toFixed(1)} ms`,
      );
      expect(requests).toEqual(['ssm:GetParameters:/oncely/prod/upstash-url,/oncely/prod/upstash-token']);
      const [first, duplicate, second] = out.results!;
      expect(first).toMatchObject({ ok: true, value: { id: 'item-1', fence: expect.any(Number) } });
      expect(duplicate).toEqual(first); // the stored result, not a second run
      expect(second).toMatchObject({ ok: true, value: { id: 'item-2' } });
      const store = upstashStore({ url: gateway.url, token });
      try {
        expect(Object.fromEntries(await countEffects(store, 'worker', ['item-1', 'item-2']))).toEqual({
          'item-1': 1,
          'item-2': 1,
        });
      } finally {
        await store.close();
      }
    } finally {
      await gateway.close();
      await redis.stop();
    }
  });

  it('a missing token parameter fails the cold start with one ConfigError naming it', async () => {
    const url = 'http://127.0.0.1:9';
    const { out } = await runFunction('worker', { '/oncely/prod/upstash-url': { value: url } }, [
      { id: 'never' },
    ]);
    expect(out.initError?.name).toBe('ConfigError');
    expect(out.initError?.message).toBe(
      'oncely configuration: SSM parameter /oncely/prod/upstash-token (named by UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER) does not exist or is not readable here',
    );
  });
  it('webhook reads its three signing secrets (and the store) from SSM at cold start and verifies with them', async () => {
    const redis = await startRedis();
    const token = `oncely-test-secret-${randomBytes(12).toString('hex')}`;
    const secrets = {
      github: `oncely-test-secret-${randomBytes(12).toString('hex')}`,
      stripe: `whsec_${randomBytes(12).toString('hex')}`,
      standard: `whsec_${randomBytes(24).toString('base64')}`,
    };
    const gateway = await startGateway({ redis: { host: redis.host, port: redis.port }, token });
    const httpEvent = (provider: string, body: string, headers: Record<string, string>) => ({
      version: '2.0',
      routeKey: 'POST /webhooks/{provider}',
      rawPath: `/webhooks/${provider}`,
      rawQueryString: '',
      headers: { 'content-type': 'application/json', ...headers },
      requestContext: {
        http: { method: 'POST', path: `/webhooks/${provider}` },
        requestId: `r-${provider}`,
        routeKey: 'POST /webhooks/{provider}',
        stage: '$default',
      },
      pathParameters: { provider },
      body,
      isBase64Encoded: false,
    });
    const github = JSON.stringify({ action: 'opened', issue: { number: 1 } });
    const stripe = JSON.stringify({
      id: 'evt_package_test',
      object: 'event',
      type: 'payment_intent.succeeded',
    });
    const standard = JSON.stringify({ type: 'invoice.paid', data: { invoice: 'in_1' } });
    try {
      const { out, requests } = await runFunction(
        'webhook',
        {
          '/oncely/prod/upstash-url': { value: gateway.url },
          '/oncely/prod/upstash-token': { value: token },
          '/oncely/prod/github-webhook-secret': { value: secrets.github },
          '/oncely/prod/stripe-webhook-secret': { value: secrets.stripe },
          '/oncely/prod/standard-webhook-secret': { value: secrets.standard },
        },
        [
          httpEvent('github', github, {
            ...signGithub(github, secrets.github),
            'x-github-delivery': 'gh-1',
            'x-github-event': 'issues',
          }),
          httpEvent('stripe', stripe, signStripe(stripe, secrets.stripe)),
          httpEvent('standard', standard, signStandardWebhook(standard, secrets.standard, 'msg_1')),
          httpEvent('github', github, {
            ...signGithub(github, 'not-the-secret'),
            'x-github-delivery': 'gh-2',
            'x-github-event': 'issues',
          }),
        ],
      );
      expect(out.initError).toBeUndefined();
      expect(requests.length).toBe(1);
      expect(requests[0]!.split(':').slice(0, 2)).toEqual(['ssm', 'GetParameters']);
      expect(requests[0]!.slice('ssm:GetParameters:'.length).split(',').sort()).toEqual([
        '/oncely/prod/github-webhook-secret',
        '/oncely/prod/standard-webhook-secret',
        '/oncely/prod/stripe-webhook-secret',
        '/oncely/prod/upstash-token',
        '/oncely/prod/upstash-url',
      ]);
      const statuses = out.results!.map((r) =>
        r.ok ? (r.value as { statusCode: number }).statusCode : r.error,
      );
      expect(statuses).toEqual([200, 200, 200, 401]);
    } finally {
      await gateway.close();
      await redis.stop();
    }
  });
});
