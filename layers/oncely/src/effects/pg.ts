/**
 * `oncely/effects/pg`: fenced writes to PostgreSQL through the `pg` client you already have (an optional peer
 * dependency; only its types are named here). Two shapes:
 *
 * - fencedUpsert: the row keeps its own highest fence in a column, and one INSERT … ON CONFLICT DO UPDATE …
 *   WHERE fence <= $fence writes it: the check and the write are one statement, one round trip.
 * - withFence: any writes, to any tables, in one transaction that first raises the resource's fence in a side
 *   table (createFenceTable). The raise takes the fence row's lock, so writers of one resource run one at a
 *   time and a stale one is refused before its writes run; they commit together or not at all.
 *
 * Either refuses a write whose fence is older than the last one with StaleFenceError, and writes nothing.
 */
import type { ClientBase, Pool, PoolClient } from 'pg';
import { staleFence } from '../errors.js';
import { check } from '../validate.js';
import { fenceProblems } from './fence.js';

export { StaleFenceError } from '../errors.js';

/** What the helpers take: a Pool (a client is checked out for the call), a PoolClient or a Client. */
export type PgDb = Pool | ClientBase;

/** The side table withFence uses unless told otherwise. */
export const DEFAULT_FENCE_TABLE = 'oncely_fences';

/** An identifier (`name` or `schema.name`), double-quoted part by part; undefined when it is not one. */
function quoted(name: unknown): string | undefined {
  if (typeof name !== 'string' || name === '') return undefined;
  const parts = name.split('.');
  if (parts.length > 2 || parts.some((p) => p === '' || p.includes('\0'))) return undefined;
  return parts.map((p) => `"${p.replaceAll('"', '""')}"`).join('.');
}

function identifierProblems(field: string, name: unknown): string[] {
  return quoted(name) === undefined ? [`${field} must be a table or column name (name or schema.name)`] : [];
}

/** Creates the side table withFence keeps each resource's highest fence in, if it is not there. */
export async function createFenceTable(db: PgDb, table: string = DEFAULT_FENCE_TABLE): Promise<void> {
  check(identifierProblems('table', table), 'createFenceTable');
  await db.query(
    `CREATE TABLE IF NOT EXISTS ${quoted(table)} (resource text PRIMARY KEY, fence bigint NOT NULL)`,
  );
}

export interface WithFenceInput {
  /** What the writes change, as one name (e.g. `order:42`): every writer of it must use the same name. */
  resource: string;
  /** The writer's fence: `once.fence`, `lease.fence`. */
  fence: number;
  /** The side table (createFenceTable). @default 'oncely_fences' */
  table?: string;
}

/**
 * Runs `write` in a transaction on one connection, after raising `resource`'s fence to `fence` in the side
 * table; commits when `write` resolves, rolls back when it throws. If the resource already has a newer fence,
 * throws StaleFenceError before `write` runs. `write` must issue its queries on the client it is given.
 */
export async function withFence<T>(
  db: PgDb,
  input: WithFenceInput,
  write: (tx: ClientBase) => Promise<T>,
): Promise<T> {
  const { resource, fence, table = DEFAULT_FENCE_TABLE } = input;
  check(
    [
      ...(typeof resource === 'string' && resource !== '' ? [] : ['resource must be a non-empty string']),
      ...fenceProblems(fence),
      ...identifierProblems('table', table),
    ],
    'withFence',
  );
  const t = quoted(table);
  const pooled = isPool(db);
  const tx: ClientBase = pooled ? await db.connect() : db;
  let broken: unknown;
  try {
    await tx.query('BEGIN');
    try {
      const raised = await tx.query(
        `INSERT INTO ${t} AS f (resource, fence) VALUES ($1, $2) ON CONFLICT (resource) DO UPDATE ` +
          'SET fence = EXCLUDED.fence WHERE f.fence <= EXCLUDED.fence',
        [resource, fence],
      );
      if (raised.rowCount !== 1) {
        const now = await tx.query<{ fence: string }>(`SELECT fence FROM ${t} WHERE resource = $1`, [
          resource,
        ]);
        throw staleFence(resource, fence, fenceOf(now.rows[0]?.fence));
      }
      const result = await write(tx);
      await tx.query('COMMIT');
      return result;
    } catch (err) {
      await tx.query('ROLLBACK').catch((e: unknown) => {
        broken = e;
      });
      throw err;
    }
  } finally {
    if (pooled) (tx as PoolClient).release(broken instanceof Error ? broken : undefined);
  }
}

export interface FencedUpsertInput {
  /** The table written: it has a unique key on the `key` columns and a bigint fence column. */
  table: string;
  /** The row's key: column -> value (the columns of a unique constraint). */
  key: Record<string, unknown>;
  /** The columns written: column -> value. */
  values: Record<string, unknown>;
  /** The writer's fence: `once.fence`, `lease.fence`. */
  fence: number;
  /** The column holding the row's highest fence. @default 'fence' */
  fenceColumn?: string;
}

/**
 * Inserts the row, or updates it if its fence is not newer than `fence`, in one statement; the row's fence
 * column becomes `fence`. Throws StaleFenceError (nothing written) when the row holds a newer fence.
 */
export async function fencedUpsert(db: PgDb, input: FencedUpsertInput): Promise<void> {
  const { table, key, values, fence, fenceColumn = 'fence' } = input;
  const keyCols = Object.keys(key ?? {});
  const valueCols = Object.keys(values ?? {});
  const sql = upsertSql(table, keyCols, valueCols, fenceColumn, fence);
  const params = [...keyCols.map((c) => key[c]), ...valueCols.map((c) => values[c]), fence];
  const res = await db.query(sql.upsert, params);
  if (res.rowCount === 1) return;
  const now = await db.query(sql.current, params.slice(0, keyCols.length));
  throw staleFence(`${table} ${JSON.stringify(key)}`, fence, fenceOf(now.rows[0]?.fence));
}

/** fencedUpsert's statements per table and columns, built (and their names checked) once: a write is hot. */
const statements = new Map<string, { upsert: string; current: string }>();

function upsertSql(
  table: string,
  keyCols: string[],
  valueCols: string[],
  fenceColumn: string,
  fence: number,
) {
  const id = `${table}\0${fenceColumn}\0${keyCols.join('\0')}\0\0${valueCols.join('\0')}`;
  const known = statements.get(id);
  if (known && Number.isSafeInteger(fence) && fence >= 1) return known;
  check(
    [
      ...identifierProblems('table', table),
      ...identifierProblems('fenceColumn', fenceColumn),
      ...(keyCols.length > 0 ? [] : ['key must name at least one column']),
      ...[...keyCols, ...valueCols].flatMap((c) => (c.includes('.') ? [`column "${c}" has a "."`] : [])),
      ...fenceProblems(fence),
    ],
    'fencedUpsert',
  );
  const t = quoted(table) as string;
  const f = quoted(fenceColumn) as string;
  const keys = keyCols.map((c) => quoted(c) as string);
  const cols = [...keys, ...valueCols.map((c) => quoted(c) as string), f];
  const sets = cols.slice(keys.length).map((c) => `${c} = EXCLUDED.${c}`);
  const sql = {
    upsert:
      `INSERT INTO ${t} AS r (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')}) ` +
      `ON CONFLICT (${keys.join(', ')}) DO UPDATE SET ${sets.join(', ')} WHERE r.${f} <= EXCLUDED.${f}`,
    current: `SELECT ${f} AS fence FROM ${t} WHERE ${keys.map((c, i) => `${c} = $${i + 1}`).join(' AND ')}`,
  };
  if (statements.size >= 256) statements.clear();
  statements.set(id, sql);
  return sql;
}

/** A bigint column's value (pg gives it as a string) as a number; undefined when there is none. */
function fenceOf(v: unknown): number | undefined {
  return v === undefined || v === null ? undefined : Number(v);
}

function isPool(db: PgDb): db is Pool {
  return 'totalCount' in db && typeof (db as Pool).connect === 'function';
}
