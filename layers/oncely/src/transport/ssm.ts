/**
 * Secrets read at run time from SSM Parameter Store, so a template or a function's environment carries only
 * parameter names: `<NAME>_SSM_PARAMETER=/oncely/prod/upstash-token` stands for `<NAME>`, whose value is the parameter's
 * (a SecureString, decrypted). `loadSecrets()` reads every such parameter in one GetParameters call per ten
 * names, once per container (the values are cached for its life), and `fromEnvAsync()` is `fromEnv()` over
 * the result. A plain `<NAME>` keeps working (local use, or users who want it); setting both is an error.
 *
 * `@aws-sdk/client-ssm` is loaded only when some `<NAME>_SSM_PARAMETER` is set; on Lambda it comes with the runtime.
 */
import { badConfig } from '../errors.js';
import { fromEnv } from './from-env.js';
import type { Store } from './types.js';

type Env = Record<string, string | undefined>;

/** The suffix of a variable that names the SSM parameter holding another variable's value. */
export const SSM_SUFFIX = '_SSM_PARAMETER';

/** GetParameters' limit on names per call. */
const BATCH = 10;

/**
 * Reads up to ten parameters, decrypted: the values found, by name (a name left out does not exist). Rejects
 * on a denied or failed call.
 */
export type ParameterReader = (names: readonly string[]) => Promise<Readonly<Record<string, string>>>;

export interface LoadSecretsOptions {
  /**
   * Reads the parameters. Defaults to `@aws-sdk/client-ssm` GetParameters with `WithDecryption` (region,
   * credentials and endpoint from the Lambda environment, `AWS_ENDPOINT_URL_SSM` included).
   */
  readonly read?: ParameterReader;
}

let defaultReader: ParameterReader | undefined;

/** GetParameters through one SSMClient per container, bounded per request (3 s) and per connect (1 s). */
function sdkReader(): ParameterReader {
  defaultReader ??= (() => {
    // The .catch() right on the import() lets esbuild bundle an app that does not install the SDK (an optional
    // peer: on Lambda it comes with the runtime); reading a parameter then says what is missing.
    const client = import('@aws-sdk/client-ssm')
      .catch(() => {
        throw badConfig([
          'reading *_SSM_PARAMETER needs @aws-sdk/client-ssm (on Lambda it comes with the runtime): npm install @aws-sdk/client-ssm',
        ]);
      })
      .then((sdk) => ({
        sdk,
        client: new sdk.SSMClient({
          maxAttempts: 3,
          requestHandler: { requestTimeout: 3_000, connectionTimeout: 1_000 },
        }),
      }));
    return async (names) => {
      const { sdk, client: ssm } = await client;
      const out = await ssm.send(new sdk.GetParametersCommand({ Names: [...names], WithDecryption: true }));
      const values: Record<string, string> = {};
      for (const p of out.Parameters ?? []) if (p.Name && p.Value !== undefined) values[p.Name] = p.Value;
      return values;
    };
  })();
  return defaultReader;
}

/** Values read so far, per reader (the default reader's live as long as the container). */
const caches = new WeakMap<ParameterReader, Map<string, string>>();

/**
 * A copy of `env` in which every `<NAME>_SSM_PARAMETER` (non-empty) has been replaced by `<NAME>` set to the value of
 * the parameter it names. Each parameter is read once per container; later calls answer from the cache.
 *
 * Throws one ConfigError naming every problem: a parameter that does not exist, a read that was denied or
 * failed (with the AWS error's name, and the error as `cause`), `<NAME>` and `<NAME>_SSM_PARAMETER` both set. Values
 * never appear in it.
 */
export async function loadSecrets(env: Env = process.env, options: LoadSecretsOptions = {}): Promise<Env> {
  const wanted = new Map<string, string>(); // variable -> parameter name
  const problems: string[] = [];
  for (const [key, value] of Object.entries(env)) {
    if (!key.endsWith(SSM_SUFFIX) || key.length === SSM_SUFFIX.length) continue;
    const parameter = value?.trim();
    if (!parameter) continue;
    const name = key.slice(0, -SSM_SUFFIX.length);
    if (env[name]?.trim()) problems.push(`set ${name} or ${key}, not both`);
    else if (/\s/.test(parameter)) problems.push(`${key} must be an SSM parameter name, got "${parameter}"`);
    else wanted.set(name, parameter);
  }
  if (problems.length > 0) throw badConfig(problems);
  if (wanted.size === 0) return { ...env };

  const read = options.read ?? sdkReader();
  let cache = caches.get(read);
  if (!cache) {
    cache = new Map();
    caches.set(read, cache);
  }
  const toRead = [...new Set(wanted.values())].filter((p) => !cache.has(p));
  const variablesOf = (parameter: string) =>
    [...wanted].filter(([, p]) => p === parameter).map(([name]) => `${name}${SSM_SUFFIX}`);
  let cause: unknown;
  const batches = Array.from({ length: Math.ceil(toRead.length / BATCH) }, (_, i) =>
    toRead.slice(i * BATCH, (i + 1) * BATCH),
  );
  await Promise.all(
    batches.map(async (names) => {
      let answer: Readonly<Record<string, string>>;
      try {
        answer = await read(names);
      } catch (err) {
        cause ??= err;
        const kind = err instanceof Error ? err.name : 'Error';
        const what = kind === 'AccessDeniedException' ? 'denied' : 'failed';
        const hint =
          what === 'denied' ? ': grant ssm:GetParameters on them, and kms:Decrypt on their key' : '';
        problems.push(`reading SSM parameter(s) ${names.join(', ')} ${what} (${kind})${hint}`);
        return;
      }
      for (const name of names) {
        const value = Object.hasOwn(answer, name) ? answer[name] : undefined;
        if (value !== undefined) cache.set(name, value);
        else {
          problems.push(
            `SSM parameter ${name} (named by ${variablesOf(name).join(', ')}) does not exist or is not readable here`,
          );
        }
      }
    }),
  );
  if (problems.length > 0) throw badConfig(problems, { cause });

  const out: Env = { ...env };
  for (const [name, parameter] of wanted) {
    out[name] = cache.get(parameter);
    delete out[`${name}${SSM_SUFFIX}`];
  }
  return out;
}

/**
 * `fromEnv(await loadSecrets(env))`: the store, with its secrets read from SSM where the environment names
 * parameters (`UPSTASH_REDIS_REST_TOKEN_SSM_PARAMETER`, `ONCELY_REDIS_PASSWORD_SSM_PARAMETER`, …). Await it once at module scope
 * (`const store = await fromEnvAsync();`): the cold start reads the parameters, warm invocations reuse it.
 */
export async function fromEnvAsync(env: Env = process.env, options: LoadSecretsOptions = {}): Promise<Store> {
  return fromEnv(await loadSecrets(env, options));
}
