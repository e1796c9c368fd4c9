// `npm run package:offline` (scripts/package-offline.ts): a user's offline `serverless package`, against the
// stand-in for SSM and CloudFormation the tests use. A whole package lands in the folder asked for; a failed one
// leaves nothing behind, not even the folder it was staged in.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { functionNames } from '../../scripts/build.js';
import { packageOffline } from '../../scripts/package-offline.js';

const scratch = mkdtempSync(join(tmpdir(), 'oncely-package-offline-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('npm run package:offline', () => {
  it('packages the vpc stage with no AWS account: the template, a zip per function and the layer', {
    timeout: 600_000,
  }, async () => {
    const out = join(scratch, 'vpc');
    const files = await packageOffline('vpc', out);
    expect(files).toContain('cloudformation-template-update-stack.json');
    for (const name of functionNames()) expect(files).toContain(`${name}.zip`);
    expect(files.some((f) => /oncely.*\.zip$/i.test(f) && !functionNames().includes(f.slice(0, -4)))).toBe(
      true,
    );
    // The placeholders reached the template: the VPC settings a real deploy reads from SSM.
    expect(readFileSync(join(out, 'cloudformation-template-update-stack.json'), 'utf8')).toContain(
      'subnet-0123456789abcdef0',
    );
    expect(readdirSync(scratch)).toEqual(['vpc']); // no staging folder left
  });

  it('a failed package leaves no partial output and no staging folder, and says what failed', {
    timeout: 600_000,
  }, async () => {
    const out = join(scratch, 'failed');
    // The vpc stage without its SSM settings: serverless stops on the first one it cannot resolve.
    await expect(packageOffline('vpc', out, {})).rejects.toThrow(
      /serverless package --stage vpc failed:[\s\S]*Cannot resolve variable at "provider\.vpc\.subnetIds"/,
    );
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(scratch)).toEqual(['vpc']);
    await expect(packageOffline('Not A Stage', out)).rejects.toThrow(/--stage must be a stage name/);
  });
});
