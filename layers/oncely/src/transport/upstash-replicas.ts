/**
 * The REST side of the replica wait (replicas.ts): how many replicas a grant must reach, and the WAIT that
 * goes in the grant's own `/pipeline` request, right after its script. Upstash documents WAIT; the dev gateway
 * runs such a pipeline on a connection of its own (dev/gateway.ts), so WAIT counts that script's write.
 */
import type { Pipeline } from '@upstash/redis';
import { checkAcknowledged, type ReplicaWait } from './replicas.js';
import type { CallResult, ScriptCall } from './types.js';

/** A pipeline's reply to one command. */
export type Reply = { result?: unknown; error?: string };
type Command = readonly (string | number)[];

/**
 * How long a server's replica must stay gone before 'auto' stops waiting for it, and how often at most a
 * server that lists no replica is looked at again (as tcp-replicas.ts).
 */
const REPLICA_RECHECK_MS = 5000;

/** The replica count in an INFO replication reply. */
const replicasIn = (info: unknown): number =>
  Number(/connected_slaves:(\d+)/.exec(String(info ?? ''))?.[1] ?? 0);

/**
 * How many replicas a grant over REST must reach: the configured count, or with 'auto' one where the server
 * has replicas (INFO replication, read in the request of the store's first grant, ahead of its script; read
 * again, in the background, REPLICA_RECHECK_MS after a grant that was not acknowledged, and at most every
 * REPLICA_RECHECK_MS on grants while it lists none). An INFO that fails counts as no replica (as on TCP): a
 * server that refuses INFO is not waited for unless `replicas` names a number.
 */
export class RestReplicas {
  readonly wait: ReplicaWait;
  /** INFO replication in a request of its own (the background re-reads). */
  readonly #info: () => Promise<unknown>;
  #count: number | undefined;
  #reading: Promise<unknown> | undefined;
  #lookedAt = 0;
  #recheck: NodeJS.Timeout | undefined;

  constructor(wait: ReplicaWait, info: () => Promise<unknown>) {
    this.wait = wait;
    this.#info = info;
  }

  /**
   * Whether a grant may have to wait (false once 'auto' found no replica: the grant then goes as before, alone
   * to `/`). A server that listed none is looked at again in the background, at most every REPLICA_RECHECK_MS.
   */
  get mayWait(): boolean {
    const { replicas } = this.wait;
    if (replicas !== 'auto') return replicas > 0;
    if (this.#count === 0 && performance.now() - this.#lookedAt >= REPLICA_RECHECK_MS) this.#read();
    return this.#count !== 0;
  }

  /**
   * The replicas a grant must reach, or undefined before 'auto' has read INFO: the store then reads it in the
   * grant's own request (first in its pipeline) and calls note() with the reply.
   */
  required(): number | undefined {
    const { replicas } = this.wait;
    if (replicas !== 'auto') return replicas;
    return this.#count === undefined ? undefined : Math.min(this.#count, 1);
  }

  /** Records an INFO replication reply read in a grant's request; returns what that grant must reach. */
  note(info: unknown, failed: boolean): number {
    this.#lookedAt = performance.now();
    // An INFO that failed counts as no replica (looked at again, in the background, at most every 5 s).
    this.#count = failed ? (this.#count ?? 0) : replicasIn(info);
    return Math.min(this.#count ?? 0, 1);
  }

  /** A grant was not acknowledged: with 'auto', the replicas are read again REPLICA_RECHECK_MS later. */
  notAcknowledged(): void {
    if (this.wait.replicas !== 'auto' || this.#recheck) return;
    this.#recheck = setTimeout(() => {
      this.#recheck = undefined;
      this.#read();
    }, REPLICA_RECHECK_MS);
    this.#recheck.unref?.();
  }

  /** WAIT's bound for a request of a call made at `startedAt`: at most half of what the call has left. */
  waitMs(startedAt: number, callTimeoutMs: number | undefined): number {
    if (callTimeoutMs === undefined) return this.wait.timeoutMs;
    const left = startedAt + callTimeoutMs - performance.now();
    return Math.max(1, Math.min(this.wait.timeoutMs, Math.floor(left / 2)));
  }

  close(): void {
    clearTimeout(this.#recheck);
    this.#recheck = undefined;
  }

  #read(): void {
    this.#lookedAt = performance.now();
    this.#reading ??= this.#info()
      .then(
        (info) => this.note(info, false),
        () => 0,
      )
      .finally(() => {
        this.#reading = undefined;
      });
  }
}

/**
 * Appends a command to a client pipeline (WAIT, INFO). The client has no method for WAIT and no public way to
 * add a command of our own: an ECHO is added and its arguments rewritten in place (Command.command is the
 * array the pipeline sends; its reply is raw with automaticDeserialization off).
 */
export function appendCommand(p: Pipeline, command: readonly (string | number)[]): void {
  const commands = (p as unknown as { commands: { command: unknown[] }[] }).commands;
  p.echo('');
  commands[commands.length - 1]!.command.splice(0, Number.POSITIVE_INFINITY, ...command);
}

/** What withWait needs of the store. */
interface WaitingStore {
  /** For errors. */
  readonly store: string;
  /** WAIT's bound, for the call being run. */
  waitMs(): number;
  /** A script's reply as a CallResult. */
  settle(reply: Reply): CallResult;
  /**
   * One `/pipeline` request: `before`, then the calls being run and `after` (empty: no command), or without
   * `after` nothing but `before`.
   */
  exec(before: readonly Command[], after?: Command): Promise<Reply[]>;
}

/**
 * Runs calls as one `/pipeline` request. Where a granting write must reach replicas, a WAIT follows them in the
 * same request. Before 'auto' knows the server's replicas, INFO replication goes first instead, and where it
 * lists one a WAIT follows in a request of its own: Upstash's WAIT (and the gateway's, dev/gateway.ts) covers
 * the writes made before it from any connection. A grant not acknowledged is a ReplicationError.
 */
export async function withWait(
  replicas: RestReplicas | undefined,
  calls: readonly ScriptCall[],
  s: WaitingStore,
): Promise<CallResult[]> {
  const grants = replicas?.mayWait === true && calls.some((c) => c.script.grants);
  let required = grants ? replicas.required() : 0;
  const reading = required === undefined;
  const waitFor = (n: number): Command => ['wait', n, s.waitMs()];
  const replies = await s.exec(reading ? [['info', 'replication']] : [], required ? waitFor(required) : []);
  let waited: Reply | undefined;
  if (reading) {
    const info = replies.shift();
    required = replicas!.note(info?.result, !info || info.error !== undefined);
    if (required > 0)
      [waited] = await s.exec([waitFor(required)]).catch((e: unknown) => [{ error: String(e) }]);
  } else if (required) waited = replies.pop();
  const acks: [Error | null, unknown] | undefined = waited && [
    waited.error ? new Error(waited.error) : null,
    waited.result,
  ];
  return replies.map((r, i) => {
    const result = s.settle(r);
    if (!result.ok || !required) return result;
    try {
      return { ok: true, value: checkAcknowledged(calls[i]!.script, result.value, acks, required, s.store) };
    } catch (error) {
      replicas?.notAcknowledged();
      return { ok: false, error: error as Error };
    }
  });
}
