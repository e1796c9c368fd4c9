/**
 * User expressions: `{ jmespath: '...' }` key and payload specs. The JMESPath package (with Powertools'
 * functions) is loaded on first use, never at import: a layer that never meets an expression never loads it.
 */
import type { search as Search } from '@aws-lambda-powertools/jmespath';
import type { PowertoolsFunctions } from '@aws-lambda-powertools/jmespath/functions';
import { OncelyError } from './errors.js';

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

interface Jmes {
  readonly search: typeof Search;
  readonly functions: PowertoolsFunctions;
}
let jmes: Jmes | undefined;
let jmesLoading: Promise<Jmes> | undefined;

/**
 * Loads the JMESPath package (once; later calls return the same promise). identify() and jmespath() need it
 * loaded before they meet a `{ jmespath }` spec: the run-once engine awaits it before its first invocation.
 */
export function loadJmespath(): Promise<void> {
  jmesLoading ??= Promise.all([
    import('@aws-lambda-powertools/jmespath'),
    import('@aws-lambda-powertools/jmespath/functions'),
  ]).then(
    ([{ search }, { PowertoolsFunctions }]) =>
      (jmes = { search, functions: introspected(new PowertoolsFunctions()) }),
    (err: unknown) => {
      jmesLoading = undefined; // let a later call try again
      throw err;
    },
  );
  return jmesLoading.then(() => undefined);
}

/**
 * `functions` with its JMESPath function names looked up now, once. The package's search() builds a
 * TreeInterpreter per call, which asks its functions to introspect their methods again (walk the prototype
 * chain, list every property name): most of an expression's cost on a key as simple as `id`. The names of
 * a class's methods do not change, so later calls get the set the first one filled.
 */
function introspected(functions: PowertoolsFunctions): PowertoolsFunctions {
  functions.introspectMethods();
  const { methods } = functions;
  Object.defineProperty(functions, 'introspectMethods', { value: () => methods });
  return functions;
}

/** Evaluates a JMESPath expression (Powertools functions included) over `data`. Needs loadJmespath() first. */
export function jmespath(expression: string, data: unknown): unknown {
  if (!jmes) throw notLoaded();
  return jmes.search(expression, data as Parameters<typeof Search>[1], { customFunctions: jmes.functions });
}

/** Throws unless loadJmespath() has completed. */
export function requireJmespath(): void {
  if (!jmes) throw notLoaded();
}

const notLoaded = () =>
  new OncelyError('JMESPath is loaded on first use: await loadJmespath() before evaluating an expression');

export const isJmespathSpec = (spec: unknown): spec is { jmespath: unknown } =>
  isObj(spec) && 'jmespath' in spec;

/** True when a key or payload spec is a JMESPath expression (the engine then loads the package). */
export function usesJmespath(spec: unknown): boolean {
  return isJmespathSpec(spec);
}

/** What can be checked of a JMESPath spec without the package: a non-empty string. */
export function jmespathShapeProblems(expression: unknown, field: string): string[] {
  return typeof expression !== 'string' || expression.trim() === ''
    ? [`${field}.jmespath must be a non-empty string`]
    : [];
}

/**
 * Problems with a JMESPath expression: it must parse (evaluating it over `{}` finds lexer and parse errors).
 * Loads the package.
 */
export async function jmespathProblems(expression: unknown, field: string): Promise<string[]> {
  const shape = jmespathShapeProblems(expression, field);
  if (shape.length > 0) return shape;
  await loadJmespath();
  try {
    jmespath(expression as string, {});
    return [];
  } catch (err) {
    const name = (err as Error).name;
    // A type error over {} is fine: the expression parsed, the empty object just lacks the fields.
    if (name === 'JMESPathTypeError' || name === 'ArityError' || name === 'VariadicArityError') return [];
    return [`${field}.jmespath does not parse: ${(err as Error).message}`];
  }
}

/**
 * The syntax problems of the `{ jmespath }` specs among `specs` (field name → spec), once the package has
 * loaded. Specs of any other kind are skipped (keySpecProblems / payloadSpecProblems check them).
 */
export async function expressionProblems(specs: Readonly<Record<string, unknown>>): Promise<string[]> {
  const problems: string[] = [];
  for (const [field, spec] of Object.entries(specs))
    if (isJmespathSpec(spec)) problems.push(...(await jmespathProblems(spec.jmespath, field)));
  return problems;
}
