/**
 * loadSecrets and fromEnvAsync as the entry points export them: ssm.ts loads on the first call (both are
 * async, so nothing a caller sees changes), and a function that takes its store from fromEnv() or options
 * never loads it.
 */
import type { fromEnvAsync as FromEnvAsync, loadSecrets as LoadSecrets } from './ssm.js';

export const loadSecrets: typeof LoadSecrets = async (...args) =>
  (await import('./ssm.js')).loadSecrets(...args);

export const fromEnvAsync: typeof FromEnvAsync = async (...args) =>
  (await import('./ssm.js')).fromEnvAsync(...args);
