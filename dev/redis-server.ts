/**
 * Real redis-server processes for `npm start` and the test harness: standalone servers, independent masters
 * (Redlock) and a Redis Cluster, each on free ports, each stopped by PID.
 *
 * Every PID this module spawns is registered; on process exit (and SIGINT / SIGTERM / SIGHUP) every one still
 * running is killed, so a failed setup or a crashed test run leaves no server behind. Child handles are
 * unref'd: a forgotten server never keeps the Node process alive, the exit hook takes it down instead.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  accessSync,
  constants as fsConstants,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMainThread } from 'node:worker_threads';
import { Redis } from 'ioredis';
import { keySlot } from '../layers/oncely/src/transport/cluster.js';

export const HOST = '127.0.0.1';
export const CLUSTER_SLOTS = 16384;

export interface RedisProcess {
  readonly host: string;
  readonly port: number;
  /** PID of the current process; changes after restart(). */
  readonly pid: number;
  /** `redis://127.0.0.1:<port>` (no credentials). */
  readonly url: string;
  readonly password: string | undefined;
  /** True while the process is running (paused counts as running). */
  readonly running: boolean;
  /** SIGTERM, then SIGKILL if it has not exited within a grace period; resolves once it has exited. */
  stop(): Promise<void>;
  /** SIGKILL (a crash: no shutdown, no reply to in-flight commands); resolves once it has exited. */
  kill(): Promise<void>;
  /** SIGSTOP: the server hangs, connections stay open, commands get no reply (a network partition). */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Starts it again on the same port, args and directory (a cluster node keeps its node id and slots). */
  restart(): Promise<void>;
}

export interface StartRedisOptions {
  /** Fixed port; without it a free one is picked (and picked again if another process grabs it first). */
  port?: number;
  /** Extra `redis-server` arguments, appended after the defaults (a later one overrides an earlier one). */
  args?: string[];
  /** Sets `requirepass` through a config file, so it never shows in `ps`. */
  password?: string;
  /**
   * Where the server listens and runs: an address inside a network namespace (`ip netns exec <netns>
   * redis-server ...`, as root), for tests that partition it (test/support/netns.ts).
   * @default { host: '127.0.0.1' } in this process' own namespace
   */
  place?: { host: string; netns: string };
  /**
   * How long to wait for the server to answer on its port.
   * @default 10_000
   */
  startTimeoutMs?: number;
}

export interface RedisCluster {
  /** Every node: the masters first (in slot order), then the replicas (replica i follows master i % masters). */
  readonly nodes: RedisProcess[];
  readonly seeds: { host: string; port: number }[];
  /** The nodes that were masters at start (roles change after a failover). */
  readonly masters: RedisProcess[];
  /** The nodes that were replicas at start. */
  readonly replicas: RedisProcess[];
  stop(): Promise<void>;
}

export interface StartClusterOptions {
  /** @default 3 */
  masters?: number;
  /** Fixed ports, one per master (bus ports are still picked free). */
  ports?: number[];
  /** Extra `redis-server` arguments for every node. */
  args?: string[];
  /** `requirepass` on every node (as an ElastiCache / MemoryDB AUTH token). */
  password?: string;
  /**
   * Replicas per master (a 3 + 3 cluster: `{ masters: 3, replicas: 1 }`). Replicas always try to fail over
   * (`cluster-replica-validity-factor 0`), so a replica that lagged behind is still promoted, as in a real
   * failover of a master whose replica was slow; `cluster-require-full-coverage no` lets the other shards
   * serve while one fails over.
   * @default 0
   */
  replicas?: number;
  /** Where node `i` (masters first, then replicas) runs: see StartRedisOptions.place. */
  place?: (index: number) => { host: string; netns: string };
  /** `cluster-node-timeout`. @default 1000 */
  nodeTimeoutMs?: number;
  /** How long to wait for every node to report `cluster_state:ok` and agree on the slots. @default 15_000 */
  readyTimeoutMs?: number;
}

export interface RedisMasters {
  readonly nodes: RedisProcess[];
  stop(): Promise<void>;
}

/** A server that failed to start; `output` holds the tail of its stdout and stderr. */
export class RedisStartError extends Error {
  override readonly name = 'RedisStartError';
  constructor(
    message: string,
    readonly output: string,
    options?: { cause?: unknown },
  ) {
    super(output ? `${message}\n--- redis-server output ---\n${output}` : message, options);
  }
  get addressInUse(): boolean {
    return /address already in use/i.test(this.output);
  }
}

const STOP_GRACE_MS = 3000;
const OUTPUT_TAIL_CHARS = 8192;
const PORT_ATTEMPTS = 4;

// -----------------------------------------------------------------------------------------------------------
// Registry: every PID we spawned and is still running, every directory we created.

const live = new Map<number, ChildProcess>();
const handles = new Set<RedisProcess>();
const spawned: number[] = [];
const dirs = new Set<string>();
let hooksInstalled = false;

function killAllSync(): void {
  for (const pid of live.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function removeDirsSync(): void {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    killAllSync();
    removeDirsSync();
  });
  // Signals reach the main thread only. When nobody else handles the signal, clean up and re-raise it so the
  // process still dies the default way; when someone does (npm start's graceful stop, a test runner), leave
  // it to them: they end with process.exit(), and the exit hook above kills whatever is left.
  if (!isMainThread) return;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      if (process.listenerCount(signal) > 1) return;
      killAllSync();
      removeDirsSync();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** PIDs of the redis-server processes this module started that are still running. */
export function livePids(): number[] {
  return [...live.keys()];
}

/** Every PID this module ever spawned, in order (for tests that check nothing was left behind). */
export function spawnedPids(): number[] {
  return [...spawned];
}

// -----------------------------------------------------------------------------------------------------------
// Ports and binary

/** A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('freePort: no address'));
      });
    });
  });
}

/** `count` distinct free ports. */
async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

let binary: string | undefined;

/** Absolute path of `redis-server` (or `$ONCELY_REDIS_SERVER`); throws at once with an install hint. */
export function redisServerBinary(): string {
  if (binary) return binary;
  const override = process.env.ONCELY_REDIS_SERVER;
  const candidates = override
    ? [override]
    : (process.env.PATH ?? '').split(path.delimiter).map((dir) => path.join(dir, 'redis-server'));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      binary = candidate;
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error(
    override
      ? `ONCELY_REDIS_SERVER=${override} is not an executable file`
      : 'redis-server not found on PATH: install it with ' +
          '`sudo apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis`',
  );
}

// -----------------------------------------------------------------------------------------------------------
// Readiness: a raw RESP probe (AUTH, INFO server), no client library involved.

function encodeCommand(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/**
 * The `process_id` of whatever answers on the port, or a reason it did not (refused, reset, timeout, error
 * reply). Comparing the PID with our child's tells our server from a stranger that already held the port.
 */
function probe(
  host: string,
  port: number,
  password: string | undefined,
  timeoutMs: number,
): Promise<number | string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let buffered = '';
    const finish = (result: number | string): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => finish('timeout'));
    socket.once('error', (error) => finish(error.message));
    socket.once('close', () => finish('connection closed'));
    socket.once('connect', () => {
      const auth = password === undefined ? '' : encodeCommand(['AUTH', password]);
      socket.write(auth + encodeCommand(['INFO', 'server']));
    });
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      const error = buffered.match(/^-(.*)\r\n/m);
      if (error) return finish(error[1] ?? 'error reply');
      const pid = buffered.match(/\r\nprocess_id:(\d+)\r\n/);
      if (pid) finish(Number(pid[1]));
    });
  });
}

// -----------------------------------------------------------------------------------------------------------
// One server

const tick = new Int32Array(new SharedArrayBuffer(4));

/**
 * Signals are delivered asynchronously: on a busy machine a SIGSTOPped process can still show as running for a
 * few ms. On Linux, wait (synchronously, at most 1 s) until /proc shows it stopped (or running again), so
 * pause() and resume() hold when they return.
 */
function awaitStopState(pid: number, stopped: boolean): void {
  if (process.platform !== 'linux') return;
  const deadline = performance.now() + 1000;
  while (performance.now() < deadline) {
    let state: string | undefined;
    try {
      state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    } catch {
      return; // gone
    }
    if (state === 'Z' || (state === 'T') === stopped) return;
    Atomics.wait(tick, 0, 0, 1);
  }
}

interface Spawned {
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
  isRunning: () => boolean;
}

class ManagedRedis implements RedisProcess {
  readonly url: string;
  #current: Spawned | undefined;

  constructor(
    readonly port: number,
    private readonly argv: string[],
    readonly password: string | undefined,
    private readonly startTimeoutMs: number,
    readonly host = HOST,
    private readonly netns?: string,
  ) {
    this.url = `redis://${host}:${port}`;
  }

  get pid(): number {
    if (!this.#current) throw new Error(`redis ${this.url} was never started`);
    return this.#current.pid;
  }

  get running(): boolean {
    return this.#current?.isRunning() ?? false;
  }

  async start(): Promise<void> {
    const bin = redisServerBinary();
    installExitHooks();
    // `ip netns exec` execs the server after entering the namespace: the child's PID is the server's.
    const [command, argv] = this.netns
      ? ['ip', ['netns', 'exec', this.netns, bin, ...this.argv]]
      : [bin, this.argv];
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    let running = true;
    let spawnError: Error | undefined;
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => {
        running = false;
        if (child.pid !== undefined) live.delete(child.pid);
        resolve();
      });
      child.once('error', (error) => {
        // spawn failure: 'exit' may never come
        spawnError = error;
        running = false;
        resolve();
      });
    });
    child.unref();
    (child.stdout as net.Socket | null)?.unref();
    (child.stderr as net.Socket | null)?.unref();
    if (child.pid === undefined) {
      await exited;
      throw new RedisStartError(`could not spawn ${bin}`, output, { cause: spawnError });
    }
    const pid = child.pid;
    live.set(pid, child);
    spawned.push(pid);
    this.#current = { child, pid, exited, isRunning: () => running };

    const deadline = performance.now() + this.startTimeoutMs;
    for (;;) {
      if (!running) {
        throw new RedisStartError(`redis-server on port ${this.port} exited during startup`, output.trim(), {
          cause: spawnError,
        });
      }
      const answer = await probe(this.host, this.port, this.password, 500);
      if (answer === pid) return;
      if (performance.now() > deadline) {
        await this.kill();
        const reason = typeof answer === 'number' ? `process ${answer} holds the port` : answer;
        throw new RedisStartError(
          `redis-server on port ${this.port} not ready within ${this.startTimeoutMs} ms (${reason})`,
          output.trim(),
        );
      }
      await sleep(10);
    }
  }

  #signal(signal: NodeJS.Signals): boolean {
    const current = this.#current;
    if (!current?.isRunning()) return false;
    try {
      process.kill(current.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  async stop(): Promise<void> {
    const current = this.#current;
    if (!current?.isRunning()) return;
    current.child.ref(); // keep the event loop alive until it has exited
    this.#signal('SIGTERM');
    this.#signal('SIGCONT'); // a paused server only handles SIGTERM once continued
    const grace = new AbortController();
    const timedOut = sleep(STOP_GRACE_MS, 'timeout' as const, { signal: grace.signal }).catch(() => 'exited');
    const outcome = await Promise.race([current.exited, timedOut]);
    grace.abort();
    if (outcome === 'timeout') await this.kill();
  }

  async kill(): Promise<void> {
    const current = this.#current;
    if (!current) return;
    current.child.ref();
    this.#signal('SIGKILL');
    await current.exited;
  }

  pause(): void {
    if (!this.#signal('SIGSTOP')) throw new Error(`redis ${this.url} is not running`);
    awaitStopState(this.pid, true);
  }

  resume(): void {
    if (!this.#signal('SIGCONT')) throw new Error(`redis ${this.url} is not running`);
    awaitStopState(this.pid, false);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  toString(): string {
    return `redis-server ${this.url} (pid ${this.#current?.pid ?? '-'})`;
  }
}

/**
 * Spawns `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no --dir <tmp> --daemonize no [args]`
 * and resolves once the process itself answers on the port (INFO process_id equals the child's PID). Without
 * `opts.port` it retries on a fresh port if the picked one was taken meanwhile.
 */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisProcess> {
  redisServerBinary();
  if (opts.password !== undefined && /[\r\n]/.test(opts.password)) {
    throw new RangeError('startRedis: a password cannot contain a line break');
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'oncely-redis-'));
  dirs.add(dir);
  const configArgs: string[] = [];
  if (opts.password !== undefined) {
    const configFile = path.join(dir, 'redis.conf');
    writeFileSync(configFile, `requirepass "${opts.password.replace(/(["\\])/g, '\\$1')}"\n`, {
      mode: 0o600,
    });
    configArgs.push(configFile);
  }
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const host = opts.place?.host ?? HOST;
    const argv = [
      ...configArgs,
      ...['--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no'],
      // A namespace is private to the test: its address is no more exposed than loopback.
      ...(opts.place ? ['--protected-mode', 'no'] : []),
      ...['--dir', dir, '--daemonize', 'no', ...(opts.args ?? [])],
    ];
    const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
    const server = new ManagedRedis(port, argv, opts.password, startTimeoutMs, host, opts.place?.netns);
    try {
      await server.start();
      handles.add(server);
      return server;
    } catch (error) {
      const retry = opts.port === undefined && error instanceof RedisStartError && error.addressInUse;
      if (!retry || attempt >= PORT_ATTEMPTS) throw error;
    }
  }
}

/** Stops the given servers, or every server this module started, in parallel (SIGTERM, then SIGKILL). */
export async function stopAll(servers: readonly RedisProcess[] = [...handles]): Promise<void> {
  await Promise.allSettled(servers.map((s) => s.stop()));
}

/** Starts every server in parallel; if one fails, stops the others and throws the first failure. */
async function startGroup(starts: (() => Promise<RedisProcess>)[]): Promise<RedisProcess[]> {
  const settled = await Promise.allSettled(starts.map((start) => start()));
  const started = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await stopAll(started);
    throw failed.reason;
  }
  return started;
}

/** `n` independent standalone servers (Redlock quorum tests). */
export async function startMasters(
  n: number,
  opts: Omit<StartRedisOptions, 'port'> = {},
): Promise<RedisMasters> {
  if (!Number.isInteger(n) || n < 1)
    throw new RangeError(`startMasters: n must be a positive integer, got ${n}`);
  const nodes = await startGroup(Array.from({ length: n }, () => () => startRedis(opts)));
  return { nodes, stop: () => stopAll(nodes) };
}

// -----------------------------------------------------------------------------------------------------------
// Cluster

function adminClient(node: RedisProcess): Redis {
  return new Redis({
    host: node.host,
    port: node.port,
    password: node.password,
    protocol: 2,
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 2000,
  });
}

/** Slot ranges per node as `start-end@host:port`, sorted: equal strings mean the nodes agree. */
function describeSlots(reply: unknown): { text: string; covered: number } {
  const ranges: { start: number; end: number; owner: string }[] = [];
  if (Array.isArray(reply)) {
    for (const entry of reply) {
      if (!Array.isArray(entry)) continue;
      const [start, end, master] = entry as [unknown, unknown, unknown];
      const [host, port] = Array.isArray(master) ? (master as unknown[]) : [];
      ranges.push({ start: Number(start), end: Number(end), owner: `${String(host)}:${String(port)}` });
    }
  }
  ranges.sort((a, b) => a.start - b.start);
  return {
    text: ranges.map((r) => `${r.start}-${r.end}@${r.owner}`).join(','),
    covered: ranges.reduce((sum, r) => sum + r.end - r.start + 1, 0),
  };
}

async function clusterReady(
  admins: Redis[],
  masters: RedisProcess[],
  total = masters.length,
): Promise<string | undefined> {
  const expected = masters.map((n) => `${n.host}:${n.port}`).sort();
  let agreed: string | undefined;
  for (const [i, admin] of admins.entries()) {
    const info = String(await admin.call('CLUSTER', 'INFO'));
    if (!info.includes('cluster_state:ok')) return `node ${i}: ${info.match(/cluster_state:\w+/)?.[0]}`;
    if (!info.includes(`cluster_known_nodes:${total}\r\n`)) return `node ${i} does not know every node`;
    const slots = describeSlots(await admin.call('CLUSTER', 'SLOTS'));
    if (slots.covered !== CLUSTER_SLOTS) return `node ${i} sees ${slots.covered} slots`;
    const owners = [...new Set(slots.text.split(',').map((r) => r.split('@')[1] ?? ''))].sort();
    if (owners.join() !== expected.join()) return `node ${i} sees masters ${owners.join(' ')}`;
    if (agreed !== undefined && slots.text !== agreed) return `node ${i} disagrees on slots`;
    agreed = slots.text;
  }
  return undefined;
}

/** A key whose slot lies in `first`..`last` (a range a cluster master owns). */
function keyInSlots(first: number, last: number): string {
  for (let i = 0; i < 1_000_000; i++) {
    const key = `oncely-harness:{sync-${i}}`;
    const slot = keySlot(key);
    if (slot >= first && slot <= last) return key;
  }
  throw new RangeError(`no key found for slots ${first}-${last}`);
}

/**
 * How many replicas of `node` (a master) acknowledge a write now: a key it owns is written and WAITed for,
 * on one connection, for up to `timeoutMs`. Returns 0 when the node does not answer.
 *
 * This, not `INFO replication`, says whether a replica is ready. After a full sync with Redis 7's default
 * diskless transfer the master lists the replica as `state=online` (and the replica reports
 * `master_link_status:up`) while it still sends it nothing: the master starts its command stream only on a
 * REPLCONF ACK received once it has reaped the RDB child (serverCron, up to 100 ms after the transfer). The
 * replica sends one ACK as soon as it has loaded the data, usually before that, and it is ignored; the next
 * comes from the replica's once-a-second cron. For up to about a second, then, a replica shown online
 * acknowledges nothing and `WAIT 1 500` returns 0 (measured: 2 of 18 fresh syncs on an idle machine).
 */
export async function replicasAcknowledging(
  node: RedisProcess,
  replicas: number,
  timeoutMs: number,
): Promise<number> {
  const admin = adminClient(node);
  admin.on('error', () => {});
  try {
    await admin.connect();
    let key = 'oncely-harness:sync';
    const slots = await admin.call('CLUSTER', 'SLOTS').catch(() => undefined);
    if (Array.isArray(slots)) {
      const own = (slots as [number, number, [string, number]][]).find(
        ([, , owner]) => Number(owner[1]) === node.port,
      );
      if (!own) return 0;
      key = keyInSlots(own[0], own[1]);
    }
    const replies = await admin
      .pipeline()
      .set(key, String(Date.now()), 'PX', 60_000)
      .wait(replicas, timeoutMs)
      .exec();
    const [error, acks] = replies?.[1] ?? [new Error('no reply'), 0];
    return error ? 0 : Number(acks);
  } catch {
    return 0;
  } finally {
    admin.disconnect();
  }
}

/**
 * A Redis Cluster of `masters` masters (and `replicas` replicas each) with all 16384 slots split evenly, ready once every node
 * reports `cluster_state:ok` and the same slot map. Built with CLUSTER ADDSLOTSRANGE / SET-CONFIG-EPOCH /
 * MEET (no redis-cli needed). On any failure every node already started is stopped before the error is
 * thrown.
 *
 * Note: a fresh master turns `cluster_state:ok` no sooner than 2 s after it started (Redis'
 * CLUSTER_WRITABLE_DELAY), so this takes a little over 2 s.
 */
export async function startCluster(opts: StartClusterOptions = {}): Promise<RedisCluster> {
  const masters = opts.masters ?? opts.ports?.length ?? 3;
  if (!Number.isInteger(masters) || masters < 1) {
    throw new RangeError(`startCluster: masters must be a positive integer, got ${masters}`);
  }
  if (opts.ports && opts.ports.length !== masters) {
    throw new RangeError(`startCluster: ${opts.ports.length} ports given for ${masters} masters`);
  }
  const replicas = opts.replicas ?? 0;
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > 5) {
    throw new RangeError(`startCluster: replicas must be a whole number from 0 to 5, got ${replicas}`);
  }
  const nodeTimeoutMs = opts.nodeTimeoutMs ?? 1000;
  const busPorts = new Map<RedisProcess, number>();
  const replicaArgs =
    replicas > 0
      ? [
          ...['--cluster-replica-validity-factor', '0', '--cluster-allow-replica-migration', 'no'],
          ...['--repl-ping-replica-period', '1'],
          // While one shard fails over, the others keep serving (Redis' default `yes` makes every master answer
          // CLUSTERDOWN until the shard has a master again).
          ...['--cluster-require-full-coverage', 'no'],
        ]
      : [];

  const startNode = async (fixedPort: number | undefined, index: number): Promise<RedisProcess> => {
    for (let attempt = 1; ; attempt++) {
      const [port, busPort] =
        fixedPort === undefined ? await freePorts(2) : [fixedPort, ...(await freePorts(1))];
      if (port === undefined || busPort === undefined || port === busPort) continue;
      const args = [
        ...['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`],
        ...['--cluster-node-timeout', String(nodeTimeoutMs), '--cluster-port', String(busPort)],
        ...replicaArgs,
        ...(opts.args ?? []),
      ];
      try {
        const node = await startRedis({ port, args, password: opts.password, place: opts.place?.(index) });
        busPorts.set(node, busPort);
        return node;
      } catch (error) {
        // A taken bus port is re-picked; a taken fixed port is the caller's problem.
        const retry =
          error instanceof RedisStartError &&
          error.addressInUse &&
          !(fixedPort !== undefined && error.output.includes(`${HOST}:${fixedPort}:`)) &&
          attempt < PORT_ATTEMPTS;
        if (!retry) throw error;
      }
    }
  };

  const total = masters * (1 + replicas);
  const nodes = await startGroup(
    Array.from({ length: total }, (_, i) => () => startNode(i < masters ? opts.ports?.[i] : undefined, i)),
  );
  const masterNodes = nodes.slice(0, masters);
  const replicaNodes = nodes.slice(masters);
  const admins = nodes.map(adminClient);
  const readyTimeoutMs = opts.readyTimeoutMs ?? 15_000 + 5_000 * replicas;
  const deadline = performance.now() + readyTimeoutMs;
  const waitFor = async (what: string, problemOf: () => Promise<string | undefined>) => {
    for (;;) {
      const problem = await problemOf();
      if (problem === undefined) return;
      if (performance.now() > deadline) throw new Error(`${what} within ${readyTimeoutMs} ms: ${problem}`);
      await sleep(50);
    }
  };
  try {
    await Promise.all(admins.map((admin) => admin.connect()));
    const per = Math.floor(CLUSTER_SLOTS / masters);
    await Promise.all(
      admins.slice(0, masters).map(async (admin, i) => {
        const first = i * per;
        const last = i === masters - 1 ? CLUSTER_SLOTS - 1 : first + per - 1;
        await admin.call('CLUSTER', 'SET-CONFIG-EPOCH', String(i + 1));
        await admin.call('CLUSTER', 'ADDSLOTSRANGE', String(first), String(last));
      }),
    );
    const [seed] = admins;
    for (const node of nodes.slice(1)) {
      await seed?.call('CLUSTER', 'MEET', node.host, String(node.port), String(busPorts.get(node)));
    }
    await waitFor('cluster not ready', () => clusterReady(admins.slice(0, masters), masterNodes, total));
    if (replicas > 0) {
      const ids = await Promise.all(
        admins.slice(0, masters).map(async (a) => String(await a.call('CLUSTER', 'MYID'))),
      );
      // Every node must know a master before it can replicate it: the ready check above saw every node known
      // by the masters; the replica's own view may lag a gossip round, so retry.
      await Promise.all(
        replicaNodes.map(async (_, j) => {
          const admin = admins[masters + j]!;
          await waitFor('replica not attached', async () => {
            try {
              await admin.call('CLUSTER', 'REPLICATE', ids[j % masters]!);
              return undefined;
            } catch (error) {
              return (error as Error).message;
            }
          });
        }),
      );
      await waitFor('replicas not in sync', async () => {
        for (const [j, admin] of admins.slice(masters).entries()) {
          const info = String(await admin.call('INFO', 'replication'));
          if (!info.includes('master_link_status:up')) return `replica ${j}: link not up`;
          if (!info.includes('master_sync_in_progress:0')) return `replica ${j}: syncing`;
        }
        for (const [i, admin] of admins.slice(0, masters).entries()) {
          const info = String(await admin.call('INFO', 'replication'));
          if (!info.includes(`connected_slaves:${replicas}\r\n`))
            return `master ${i}: replicas not connected`;
          // Every node's slot map names the replicas (CLUSTER SLOTS: master, then replicas, per range).
        }
        // Online is not enough: each master's replicas must acknowledge a write (replicasAcknowledging).
        for (const [i, node] of masterNodes.entries()) {
          if ((await replicasAcknowledging(node, replicas, 200)) < replicas)
            return `master ${i}: replicas do not acknowledge writes yet`;
        }
        for (const [i, admin] of admins.entries()) {
          const slots = (await admin.call('CLUSTER', 'SLOTS')) as unknown[][];
          if (slots.some((range) => range.length < 3 + replicas))
            return `node ${i} does not list every replica`;
        }
        return clusterReady(admins.slice(0, masters), masterNodes, total);
      });
    }
  } catch (error) {
    await stopAll(nodes);
    throw new Error(`startCluster failed (all ${nodes.length} nodes stopped): ${(error as Error).message}`, {
      cause: error,
    });
  } finally {
    for (const admin of admins) admin.disconnect();
  }
  return {
    nodes,
    masters: masterNodes,
    replicas: replicaNodes,
    seeds: masterNodes.map((n) => ({ host: n.host, port: n.port })),
    stop: () => stopAll(nodes),
  };
}
