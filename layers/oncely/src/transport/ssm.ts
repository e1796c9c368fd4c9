/**
 * The package's SSM entry: fromEnvAsync() and loadSecrets() load their code (transport/ssm-env.ts) by their
 * first call, so that a function that never reads SSM does not parse it at cold start.
 */
import type * as SsmEnv from './ssm-env.js';

export type { LoadSecretsOptions, ParameterReader } from './ssm-env.js';

/** The suffix of a variable that names the SSM parameter holding another variable's value. */
export const SSM_SUFFIX = '_SSM_PARAMETER';

const load = () => import('./ssm-env.js');

/** See transport/ssm-env.ts loadSecrets(): `<NAME>_SSM_PARAMETER` replaced by `<NAME>` set from SSM. */
export const loadSecrets: typeof SsmEnv.loadSecrets = async (...args) => (await load()).loadSecrets(...args);

/** `fromEnv(await loadSecrets(env))`: see transport/ssm-env.ts fromEnvAsync(). */
export const fromEnvAsync: typeof SsmEnv.fromEnvAsync = async (...args) =>
  (await load()).fromEnvAsync(...args);
