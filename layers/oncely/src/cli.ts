#!/usr/bin/env node
/**
 * `oncely`: see and clear what oncely holds in Redis. The store comes from the same environment as fromEnv()
 * (and SSM parameter names, as fromEnvAsync() reads them): REST, standalone or cluster.
 *
 * Exit codes: 0 ok, 1 not found, 2 bad input, 3 store unavailable, 4 store refused our credentials. Destructive commands ask on a terminal and
 * need --yes otherwise. Output is a table, or JSON with --json. Tokens, payloads and results are never shown.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { fileURLToPath } from 'node:url';
import {
  forceRelease,
  forgetRecord,
  inspectRecord,
  leaderOf,
  listRecords,
  lockStatus,
  type RecordInfo,
} from './admin.js';
import { type Flags, parse } from './cli-flags.js';
import { ConfigError, OncelyError, StoreAuthError, StoreError, ValidationError } from './errors.js';
import { fromEnvAsync } from './transport/ssm.js';
import type { Store } from './transport/types.js';

export const EXIT = { ok: 0, notFound: 1, badInput: 2, storeUnavailable: 3, authFailed: 4 } as const;

export const HELP = `oncely: see and clear oncely's locks, run-once records and leaders

Usage: oncely <command> [arguments] [--json] [--prefix <p>]

Commands:
  status <lock>                      held or free, remaining ms, fence (never the token)
  release <lock> --force [--yes]     delete a stuck lock (shows what is removed first)
  record <namespace> <key>           a run-once record, from the raw idempotency key: status, fence,
                                     age, remaining lease or retention, payload hash, result size
  forget <namespace> <key> [--yes]   delete a record so the event can run again
  records <namespace> [--status in-progress|completed] [--limit N]
                                     list a namespace's records (SCAN on every master), with a count
  leader <name>                      who leads an election, their term, time left

Options:
  --json          JSON instead of a table
  --prefix <p>    key prefix (default: oncely)
  --yes           do not ask before deleting (needed when not on a terminal)
  -h, --help      this help
  -v, --version   the package's version

Store (as fromEnv()): UPSTASH_REDIS_REST_URL + UPSTASH_REDIS_REST_TOKEN, ONCELY_REDIS_CLUSTER_NODES or
ONCELY_REDIS_URL; ONCELY_REDIS_USERNAME, ONCELY_REDIS_PASSWORD, ONCELY_REDIS_TLS, ONCELY_TIMEOUT_MS; any of
them as <NAME>_SSM_PARAMETER (read from SSM Parameter Store).

Exit codes: 0 ok, 1 not found, 2 bad input, 3 store unavailable, 4 store refused the credentials (check the
token or password).
`;

/** The package's version, from its package.json (one folder up from both src/cli.ts and dist/cli.js). */
export function version(): string {
  try {
    const manifest = readFileSync(new URL('../package.json', import.meta.url), 'utf8');
    return (JSON.parse(manifest) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export interface CliIo {
  readonly env: Record<string, string | undefined>;
  out(text: string): void;
  err(text: string): void;
  /** stdin is a terminal: destructive commands may ask. */
  readonly interactive: boolean;
  /** Asks a question on the terminal; resolves to the answer. */
  ask(question: string): Promise<string>;
  /** The store (tests); default: from `env`. */
  store?: (env: Record<string, string | undefined>) => Promise<Store>;
}

class BadInput extends Error {}

/** Runs one command; resolves to its exit code. Never throws. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`oncely: ${(err as Error).message}\n\n${HELP}`);
    return EXIT.badInput;
  }
  if (parsed.help) {
    io.out(HELP);
    return EXIT.ok;
  }
  if (parsed.version) {
    io.out(`${version()}\n`);
    return EXIT.ok;
  }
  let store: Store | undefined;
  try {
    const [command, ...args] = parsed.positionals;
    const run = COMMANDS[command ?? ''];
    if (!run) throw new BadInput(command ? `unknown command "${command}"` : 'no command');
    if (args.length !== run.args)
      throw new BadInput(
        `${command} takes ${run.args} argument${run.args === 1 ? '' : 's'}, got ${args.length}`,
      );
    store = await (io.store ?? fromEnvAsync)(io.env);
    return await run.fn(store, args, parsed, io);
  } catch (err) {
    if (err instanceof BadInput) {
      io.err(`oncely: ${err.message}\n\n${HELP}`);
      return EXIT.badInput;
    }
    if (err instanceof ConfigError || err instanceof ValidationError) {
      io.err(`oncely: ${err.message}\n`);
      return EXIT.badInput;
    }
    if (err instanceof StoreAuthError) {
      io.err(`oncely: the store refused the credentials: ${err.message}\n`);
      return EXIT.authFailed;
    }
    if (err instanceof StoreError) {
      io.err(`oncely: store unavailable: ${err.message}\n`);
      return EXIT.storeUnavailable;
    }
    io.err(`oncely: ${err instanceof OncelyError ? err.message : String(err)}\n`);
    return EXIT.storeUnavailable;
  } finally {
    await store?.close().catch(() => undefined);
  }
}

type Command = {
  args: number;
  fn: (store: Store, args: string[], flags: Flags, io: CliIo) => Promise<number>;
};

const COMMANDS: Record<string, Command> = {
  status: {
    args: 1,
    async fn(store, [name], flags, io) {
      const s = await lockStatus(store, name!, flags.prefix);
      print(io, flags, { lock: name, ...s }, [
        ['lock', name],
        ['state', s.held ? 'held' : 'free'],
        ['remaining', `${s.remainingMs} ms`],
        ['fence', s.fence],
      ]);
      return EXIT.ok;
    },
  },

  release: {
    args: 1,
    async fn(store, [name], flags, io) {
      if (!flags.force) throw new BadInput('release deletes a lock held by someone else: add --force');
      const s = await lockStatus(store, name!, flags.prefix);
      if (!s.held) {
        print(io, flags, { lock: name, result: 'not-held' }, [
          ['lock', name],
          ['state', 'free: nothing to release'],
        ]);
        return EXIT.notFound;
      }
      if (!flags.json)
        io.out(
          table([
            ['removing lock', name],
            ['remaining', `${s.remainingMs} ms`],
            ['fence', s.fence],
          ]),
        );
      if (!(await confirm(io, flags, `Delete lock "${name}" (fence ${s.fence})?`))) return EXIT.badInput;
      const result = await forceRelease(store, name!, s.fence, flags.prefix);
      print(io, flags, { lock: name, fence: s.fence, remainingMs: s.remainingMs, result }, [
        [
          'result',
          result === 'changed' ? 'not released: a new holder took it since (run status again)' : result,
        ],
      ]);
      return result === 'released' ? EXIT.ok : EXIT.notFound;
    },
  },

  record: {
    args: 2,
    async fn(store, [namespace, key], flags, io) {
      const info = await inspectRecord(store, { namespace: namespace!, prefix: flags.prefix }, key!);
      if (!info) {
        print(io, flags, { namespace, found: false }, [['record', 'none for this key']]);
        return EXIT.notFound;
      }
      print(io, flags, { namespace, ...info }, recordRows(info));
      return EXIT.ok;
    },
  },

  forget: {
    args: 2,
    async fn(store, [namespace, key], flags, io) {
      const scope = { namespace: namespace!, prefix: flags.prefix };
      const info = await inspectRecord(store, scope, key!);
      if (!info) {
        print(io, flags, { namespace, result: 'absent' }, [['record', 'none for this key']]);
        return EXIT.notFound;
      }
      if (!flags.json) io.out(table([['removing record', info.redisKey], ...recordRows(info).slice(1)]));
      const question = `Forget this ${info.status} record (fence ${info.fence})? Its event will run again.`;
      if (!(await confirm(io, flags, question))) return EXIT.badInput;
      const result = await forgetRecord(store, scope, key!, info.fence);
      print(io, flags, { namespace, ...info, result }, [
        ['result', result === 'changed' ? 'not forgotten: claimed again since (run record again)' : result],
      ]);
      return result === 'forgotten' ? EXIT.ok : EXIT.notFound;
    },
  },

  records: {
    args: 1,
    async fn(store, [namespace], flags, io) {
      const list = await listRecords(store, {
        namespace: namespace!,
        prefix: flags.prefix,
        limit: flags.limit,
        ...(flags.status ? { status: flags.status } : {}),
      });
      if (flags.json) {
        io.out(`${JSON.stringify({ namespace, count: list.count, records: list.records })}\n`);
        return EXIT.ok;
      }
      const rows = list.records.map((r) => [
        r.keyDigest,
        r.status,
        String(r.fence),
        r.ageMs === null ? '?' : `${r.ageMs} ms`,
        `${r.remainingMs} ms`,
        r.resultBytes === null ? '-' : `${r.resultBytes} B`,
      ]);
      io.out(columns([['KEY DIGEST', 'STATUS', 'FENCE', 'AGE', 'REMAINING', 'RESULT'], ...rows]));
      const shown = list.records.length;
      io.out(
        `${list.count} record${list.count === 1 ? '' : 's'}${flags.status ? ` ${flags.status}` : ''} in ${namespace}${shown < list.count ? ` (first ${shown} shown: --limit)` : ''}\n`,
      );
      return EXIT.ok;
    },
  },

  leader: {
    args: 1,
    async fn(store, [name], flags, io) {
      const info = await leaderOf(store, name!, flags.prefix);
      if (!info) {
        print(io, flags, { election: name, leader: null }, [
          ['election', name],
          ['leader', 'none'],
        ]);
        return EXIT.notFound;
      }
      print(io, flags, { election: name, leader: info.id, term: info.term, remainingMs: info.remainingMs }, [
        ['election', name],
        ['leader', info.id],
        ['term', info.term],
        ['time left', `${info.remainingMs} ms`],
      ]);
      return EXIT.ok;
    },
  },
};

function recordRows(info: RecordInfo): [string, unknown][] {
  return [
    ['record', info.redisKey],
    ['status', info.status],
    ['fence', info.fence],
    ['age', info.ageMs === null ? 'unknown' : `${info.ageMs} ms`],
    [info.status === 'completed' ? 'retention left' : 'lease left', `${info.remainingMs} ms`],
    ['payload hash', info.payloadHash || '(not checked)'],
    ['result size', info.resultBytes === null ? '-' : `${info.resultBytes} bytes`],
  ];
}

async function confirm(io: CliIo, flags: Flags, question: string): Promise<boolean> {
  if (flags.yes) return true;
  if (!io.interactive) {
    io.err('oncely: not a terminal: add --yes to delete\n');
    return false;
  }
  const answer = (await io.ask(`${question} [y/N] `)).trim().toLowerCase();
  if (answer === 'y' || answer === 'yes') return true;
  io.err('oncely: nothing deleted\n');
  return false;
}

function print(io: CliIo, flags: Flags, json: object, rows: [string, unknown][]): void {
  io.out(flags.json ? `${JSON.stringify(json)}\n` : table(rows));
}

/** Two columns: names, then values. */
function table(rows: [string, unknown][]): string {
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${String(v)}\n`).join('');
}

/** Columns aligned on their widest cell. */
function columns(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map(
      (r) =>
        `${r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('');
}

/** The process's own io: stdout, stderr, a readline prompt on a terminal. */
export function processIo(): CliIo {
  return {
    env: process.env,
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    interactive: Boolean(process.stdin.isTTY),
    async ask(question) {
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      try {
        return await rl.question(question);
      } finally {
        rl.close();
      }
    },
  };
}

/** True when this file is the program (`oncely …`, `npx oncely …`), not a module imported by another. */
function isProgram(): boolean {
  try {
    const invoked = process.argv[1];
    return Boolean(invoked) && realpathSync(invoked!) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isProgram()) process.exitCode = await main(process.argv.slice(2), processIo());
