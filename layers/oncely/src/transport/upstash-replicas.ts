/**
 * The REST side of the replica wait (replicas.ts): how many replicas a grant must reach, and the WAIT that
 * goes in the grant's own `/pipeline` request, right after its script. Upstash documents WAIT; the dev gateway
 * runs such a pipeline on a connection of its own (dev/gateway.ts), so WAIT counts that script's write.
 */
import type { Pipeline } from '@upstash/redis';
import type { ReplicaWait } from './replicas.js';
import type { CallDeadline } from './upstash-client.js';

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
 * has replicas (INFO replication, read before the store's first grant and shared by the grants made meanwhile;
 * read again, in the background, REPLICA_RECHECK_MS after a grant that was not acknowledged, and at most every
 * REPLICA_RECHECK_MS on grants while it lists none). An INFO that fails counts as no replica (as on TCP): a
 * server that refuses INFO is not waited for unless `replicas` names a number.
 */
export class RestReplicas {
  readonly wait: ReplicaWait;
  /** INFO replication, sent within the deadline (and on the request slot) of `call` when given. */
  readonly #info: (call?: CallDeadline) => Promise<unknown>;
  #count: number | undefined;
  #reading: Promise<number> | undefined;
  #lookedAt = 0;
  #recheck: NodeJS.Timeout | undefined;

  constructor(wait: ReplicaWait, info: (call?: CallDeadline) => Promise<unknown>) {
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
    if (this.#count === 0 && performance.now() - this.#lookedAt >= REPLICA_RECHECK_MS) void this.#read();
    return this.#count !== 0;
  }

  /**
   * The replicas a grant must reach: known at once, or after the first INFO ('auto'), sent as part of `call`
   * (the grant's deadline and request slot: the grant's request follows it).
   */
  required(call: CallDeadline | undefined): number | Promise<number> {
    const { replicas } = this.wait;
    if (replicas !== 'auto') return replicas;
    if (this.#count === undefined) return this.#read(call);
    return this.#count > 0 ? 1 : 0;
  }

  /** A grant was not acknowledged: with 'auto', the replicas are read again REPLICA_RECHECK_MS later. */
  notAcknowledged(): void {
    if (this.wait.replicas !== 'auto' || this.#recheck) return;
    this.#recheck = setTimeout(() => {
      this.#recheck = undefined;
      void this.#read();
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

  #read(call?: CallDeadline): Promise<number> {
    this.#lookedAt = performance.now();
    this.#reading ??= this.#info(call)
      .then(replicasIn, () => this.#count ?? 0)
      .then((count) => {
        this.#count = count;
        return count > 0 ? 1 : 0;
      })
      .finally(() => {
        this.#reading = undefined;
      });
    return this.#reading;
  }
}

/**
 * Appends `WAIT required waitMs` to a client pipeline. The client has no method for WAIT and no public way to
 * add a command of our own: an ECHO is added and its arguments rewritten in place (Command.command is the
 * array the pipeline sends; its reply is raw with automaticDeserialization off).
 */
export function appendWait(p: Pipeline, required: number, waitMs: number): void {
  const commands = (p as unknown as { commands: { command: unknown[] }[] }).commands;
  p.echo('');
  commands[commands.length - 1]!.command.splice(0, Number.POSITIVE_INFINITY, 'wait', required, waitMs);
}
