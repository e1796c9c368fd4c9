/**
 * The `oncely` command's flags: parseArgs with our options, and its errors in our words (the flag, what it takes),
 * not Node's text (which suggests `--` and `=`).
 */
import { parseArgs } from 'node:util';
import { isWhole } from './validate.js';

export interface Flags {
  positionals: string[];
  json: boolean;
  yes: boolean;
  force: boolean;
  help: boolean;
  version: boolean;
  prefix: string;
  status?: 'in-progress' | 'completed';
  limit: number;
}

const OPTIONS = {
  json: { type: 'boolean', default: false },
  yes: { type: 'boolean', short: 'y', default: false },
  force: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  version: { type: 'boolean', short: 'v', default: false },
  prefix: { type: 'string', default: 'oncely' },
  status: { type: 'string' },
  limit: { type: 'string', default: '50' },
} as const;

/** parseArgs, its errors in our words: the flag, and what it takes (Node's text suggests `--` and `=`). */
function parseFlags(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: OPTIONS });
  } catch (err) {
    const code = (err as { code?: string }).code;
    const flag = /'(-[^' ]+)/.exec((err as Error).message)?.[1] ?? '';
    const name = flag.replace(/^-+/, '');
    const known = Object.keys(OPTIONS).map((o) => `--${o}`);
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const near = known.filter((k) => k.startsWith(`--${name.slice(0, 2)}`));
      const hint = near.length ? ` (did you mean ${near.join(' or ')}?)` : '';
      throw new Error(`unknown option ${flag}${hint}; options: ${known.join(', ')}`);
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && name in OPTIONS) {
      if (OPTIONS[name as keyof typeof OPTIONS].type === 'boolean')
        throw new Error(`--${name} takes no value`);
      // A value starting with '-' (`--limit -3`) is one parseArgs will not take: ours, checked as any value.
      const next = argv[argv.indexOf(flag) + 1];
      if (next === undefined || name !== 'limit') throw new Error(`--${name} needs a value`);
      limitOf(next);
    }
    throw err;
  }
}

function limitOf(text: string): number {
  const limit = Number(text);
  if (!isWhole(limit, 1, 100_000))
    throw new Error(`--limit must be a whole number from 1 to 100000, got "${text}"`);
  return limit;
}

export function parse(argv: readonly string[]): Flags {
  const { values, positionals } = parseFlags(argv);
  const status = values.status;
  if (status !== undefined && status !== 'in-progress' && status !== 'completed')
    throw new Error(`--status must be in-progress or completed, got "${status}"`);
  const limit = limitOf(values.limit);
  if (!values.prefix || /[{}]/.test(values.prefix))
    throw new Error('--prefix must be a non-empty string without { or }');
  return {
    positionals,
    json: values.json,
    yes: values.yes,
    force: values.force,
    help: values.help || positionals[0] === 'help',
    version: values.version,
    prefix: values.prefix,
    limit,
    ...(status ? { status } : {}),
  };
}
