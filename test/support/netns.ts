/**
 * Real network partitions for tests: parties (servers, Lambda-side client processes) in their own network
 * namespaces, each joined by a veth pair to one bridge in a switch namespace; this process is the party
 * `here`, on a veth from the root namespace. Needs root (`ip netns`) and `iptables` (Debian's package, nft
 * backend: installed by .ci/run and the README's set-up).
 *
 *   const net = useNetwork();                       // beforeAll: a fresh subnet; afterAll: every trace removed
 *   const redis = await net().startRedis('m1');     // redis-server inside namespace oncely-<k>-m1
 *   await net().drop(net().party('m1'), net().here);  // replies from m1 to this process are lost
 *   await net().down('m1');                         // m1's link is down: nothing in or out
 *   await net().heal();                             // every rule flushed, every link up
 *
 * Faults:
 * - `down(party)` / `up(party)`: the party's link to the switch; a downed link cuts both directions, for
 *   everyone.
 * - `drop(from, to)`: iptables drops the packets `from` sends to `to` (one direction, one peer); `cut(a, b)`
 *   drops both directions between two parties and nobody else. Every rule lives inside a party's namespace
 *   (never in the root namespace), so deleting the namespaces removes them all.
 *
 * Names carry the prefix `oncely-` and the subnet number k (10.213.k.0/24), reserved by an owner file
 * (/tmp/oncely-netns/<k>.owner, created exclusively, holding the PID). A namespace whose owner is gone (a
 * killed run) is removed before a new network is made; ours are removed by `destroy()`, by the afterAll of
 * `useNetwork()` when a test failed, and by an exit hook when the process ends without either.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll } from 'vitest';
import {
  type RedisCluster,
  type RedisMasters,
  type RedisProcess,
  type StartClusterOptions,
  type StartRedisOptions,
  startCluster,
  startRedis,
} from '../../dev/redis-server.js';

const run = promisify(execFile);
const PREFIX = 'oncely-';
const OWNERS = '/tmp/oncely-netns';
const SUBNET = (k: number) => `10.213.${k}`;
const MAX_PARTIES = 200;
const GATEWAY_SCRIPT = fileURLToPath(new URL('./netns-gateway.ts', import.meta.url));

export interface Party {
  readonly name: string;
  /** Its namespace; undefined for `here` (this process, in the root namespace). */
  readonly netns: string | undefined;
  readonly ip: string;
}

export interface NetnsGateway {
  readonly party: Party;
  /** `http://<party ip>:<port>` */
  readonly url: string;
  readonly token: string;
}

/** Why this machine cannot make namespaces (not root, no `ip`, no `iptables`), or undefined when it can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns)';
  for (const tool of ['ip', 'iptables']) {
    try {
      execFileSync(tool, ['-V'], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed (apt-get install -y iproute2 iptables)`;
    }
  }
  return undefined;
}

async function sh(args: string[], netns?: string): Promise<string> {
  const [cmd, argv] = netns ? ['ip', ['netns', 'exec', netns, ...args]] : [args[0]!, args.slice(1)];
  try {
    return (await run(cmd, argv)).stdout;
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`netns: \`${[cmd, ...argv].join(' ')}\` failed: ${stderr}`, { cause: error });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ownerOf(k: number): number | undefined {
  try {
    return Number(readFileSync(`${OWNERS}/${k}.owner`, 'utf8')) || undefined;
  } catch {
    return undefined;
  }
}

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(PREFIX));
}

/** Removes the namespaces, root-side link and owner file of subnet k (synchronously: exit hooks use it). */
function removeSync(k: number): void {
  for (const ns of namespaces().filter((name) => name.startsWith(`${PREFIX}${k}-`))) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // gone meanwhile
    }
  }
  try {
    execFileSync('ip', ['link', 'del', `onc${k}-here`], { stdio: 'ignore' });
  } catch {
    // went with its peer
  }
  rmSync(`${OWNERS}/${k}.owner`, { force: true });
}

/** Removes what killed runs left behind: every `oncely-<k>-*` namespace whose owner is no longer running. */
export function removeStale(): number[] {
  const stale = new Set<number>();
  for (const ns of namespaces()) {
    const k = Number(ns.slice(PREFIX.length).split('-')[0]);
    const owner = ownerOf(k);
    if (owner === undefined || !alive(owner)) stale.add(k);
  }
  mkdirSync(OWNERS, { recursive: true });
  for (const file of readdirSync(OWNERS)) {
    const k = Number(file.split('.')[0]);
    const owner = ownerOf(k);
    // An empty file is being claimed right now (created, PID not yet written): not stale.
    if (owner !== undefined && !alive(owner)) stale.add(k);
  }
  for (const k of stale) removeSync(k);
  return [...stale];
}

const mine = new Set<number>();
let exitHookInstalled = false;

export class Network {
  readonly here: Party;
  readonly #parties = new Map<string, Party>();
  readonly #rules = new Set<string>(); // namespaces holding rules
  readonly #servers: (RedisProcess | RedisMasters | RedisCluster)[] = [];
  readonly #children = new Set<ChildProcess>();
  #destroyed = false;

  private constructor(readonly k: number) {
    this.here = { name: 'here', netns: undefined, ip: `${SUBNET(k)}.1` };
  }

  /** A fresh subnet with a switch and `here` (this process) on it. Removes stale networks first. */
  static async create(): Promise<Network> {
    const why = netnsUnavailable();
    if (why) throw new Error(`netns: ${why}`);
    removeStale();
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', () => {
        for (const k of mine) removeSync(k);
      });
    }
    const start = Math.floor(Math.random() * 250);
    for (let i = 0; i < 250; i++) {
      const k = (start + i) % 250;
      try {
        writeFileSync(`${OWNERS}/${k}.owner`, String(process.pid), { flag: 'wx' });
      } catch {
        continue; // taken (and alive: removeStale ran)
      }
      mine.add(k);
      const network = new Network(k);
      try {
        await network.#build();
        return network;
      } catch (error) {
        await network.destroy();
        throw error;
      }
    }
    throw new Error('netns: no free 10.213.k.0/24 subnet');
  }

  get #switch(): string {
    return `${PREFIX}${this.k}-sw`;
  }

  async #build(): Promise<void> {
    const sw = this.#switch;
    await sh(['ip', 'netns', 'add', sw]);
    await sh(['ip', 'link', 'add', 'br0', 'type', 'bridge'], sw);
    await sh(['ip', 'link', 'set', 'br0', 'up'], sw);
    const here = `onc${this.k}-here`;
    await sh(['ip', 'link', 'add', here, 'type', 'veth', 'peer', 'name', 'port0', 'netns', sw]);
    await sh(['ip', 'link', 'set', 'port0', 'master', 'br0', 'up'], sw);
    await sh(['ip', 'addr', 'add', `${this.here.ip}/24`, 'dev', here]);
    await sh(['ip', 'link', 'set', here, 'up']);
  }

  /** The party named `name`, made on first use: a namespace with one address on the switch. */
  async add(name: string): Promise<Party> {
    const existing = this.#parties.get(name);
    if (existing) return existing;
    if (!/^[a-z0-9]{1,10}$/.test(name)) throw new RangeError(`netns: party name ${name} (a-z0-9, 1-10)`);
    const index = this.#parties.size + 2;
    if (index > MAX_PARTIES) throw new RangeError(`netns: more than ${MAX_PARTIES - 1} parties`);
    const party: Party = { name, netns: `${PREFIX}${this.k}-${name}`, ip: `${SUBNET(this.k)}.${index}` };
    this.#parties.set(name, party);
    const ns = party.netns!;
    const sw = this.#switch;
    await sh(['ip', 'netns', 'add', ns]);
    await sh([
      'ip',
      'link',
      'add',
      'eth0',
      'netns',
      ns,
      'type',
      'veth',
      'peer',
      'name',
      `port-${name}`,
      'netns',
      sw,
    ]);
    await sh(['ip', 'link', 'set', `port-${name}`, 'master', 'br0', 'up'], sw);
    await sh(['ip', 'addr', 'add', `${party.ip}/24`, 'dev', 'eth0'], ns);
    await sh(['ip', 'link', 'set', 'eth0', 'up'], ns);
    await sh(['ip', 'link', 'set', 'lo', 'up'], ns);
    return party;
  }

  /** A party made earlier by `add()` or a `start*()`. */
  party(name: string): Party {
    if (name === 'here') return this.here;
    const party = this.#parties.get(name);
    if (!party) throw new Error(`netns: no party ${name}`);
    return party;
  }

  /** The party whose address is `host` (a server's `host`). */
  partyAt(host: string): Party {
    const party = [this.here, ...this.#parties.values()].find((p) => p.ip === host);
    if (!party) throw new Error(`netns: no party at ${host}`);
    return party;
  }

  async startRedis(name: string, opts: Omit<StartRedisOptions, 'place'> = {}): Promise<RedisProcess> {
    const party = await this.add(name);
    const server = await startRedis({ ...opts, place: { host: party.ip, netns: party.netns! } });
    this.#servers.push(server);
    return server;
  }

  /** `n` masters, parties `<prefix>1` .. `<prefix>n`. */
  async startMasters(
    n: number,
    prefix = 'm',
    opts: Omit<StartRedisOptions, 'place'> = {},
  ): Promise<RedisProcess[]> {
    return Promise.all(Array.from({ length: n }, (_, i) => this.startRedis(`${prefix}${i + 1}`, opts)));
  }

  /** A cluster whose node i is party `<prefix>i` (masters first, then replicas). */
  async startCluster(opts: Omit<StartClusterOptions, 'place'> = {}, prefix = 'n'): Promise<RedisCluster> {
    const total = (opts.masters ?? 3) * (1 + (opts.replicas ?? 0));
    const parties: Party[] = [];
    for (let i = 0; i < total; i++) parties.push(await this.add(`${prefix}${i}`));
    const cluster = await startCluster({
      ...opts,
      place: (i) => ({ host: parties[i]!.ip, netns: parties[i]!.netns! }),
    });
    this.#servers.push(cluster);
    return cluster;
  }

  /**
   * `process.execPath args` inside `party`'s namespace (a Lambda-side client in its own process), killed by
   * `destroy()` if still running.
   */
  spawn(party: Party, args: string[], env: Record<string, string> = {}): ChildProcess {
    if (!party.netns) throw new Error('netns: spawn needs a party with a namespace');
    const child = spawn('ip', ['netns', 'exec', party.netns, process.execPath, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /**
   * The REST gateway (dev/gateway.ts) as a process in party `name`, in front of `redis`, with a random token.
   * `env` for netns-gateway.ts' TLS files. Stopped by `destroy()`.
   */
  async startGateway(
    name: string,
    redis: { host: string; port: number },
    env: Record<string, string> = {},
  ): Promise<NetnsGateway> {
    const party = await this.add(name);
    const token = `test-${randomBytes(16).toString('base64url')}`;
    const args = ['--import', 'tsx', GATEWAY_SCRIPT, party.ip, redis.host, String(redis.port)];
    const child = this.spawn(party, args, { ...env, ONCELY_GATEWAY_TOKEN: token });
    let output = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`netns: gateway not listening within 15 s: ${output}`)),
        15_000,
      );
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
        const match = output.match(/\{"url":"([^"]+)"\}/);
        if (match?.[1]) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      child.stderr!.on('data', (chunk: Buffer) => {
        output = (output + chunk.toString('utf8')).slice(-4000);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`netns: gateway exited (${code}): ${output}`));
      });
    });
    return { party, url, token };
  }

  /** Takes `party`'s link down: nothing reaches it or leaves it, for anyone. */
  async down(party: Party | string): Promise<void> {
    await this.#link(party, 'down');
  }

  async up(party: Party | string): Promise<void> {
    await this.#link(party, 'up');
  }

  async #link(party: Party | string, state: 'up' | 'down'): Promise<void> {
    const p = typeof party === 'string' ? this.party(party) : party;
    const port = p.netns ? `port-${p.name}` : 'port0';
    await sh(['ip', 'link', 'set', port, state], this.#switch);
  }

  /**
   * Drops every packet `from` sends to `to` (TCP segments both of requests and of replies: one direction of
   * every conversation between them). The rule sits in `to`'s namespace (INPUT), or in `from`'s (OUTPUT)
   * when `to` is `here`.
   */
  async drop(from: Party, to: Party): Promise<void> {
    if (from.ip === to.ip) throw new RangeError('netns: drop between a party and itself');
    const [ns, rule] = to.netns
      ? [to.netns, ['-A', 'INPUT', '-s', from.ip, '-j', 'DROP']]
      : [from.netns!, ['-A', 'OUTPUT', '-d', to.ip, '-j', 'DROP']];
    await sh(['iptables', '-w', ...rule], ns);
    this.#rules.add(ns);
  }

  /** Both directions between `a` and `b`, nobody else. */
  async cut(a: Party, b: Party): Promise<void> {
    await this.drop(a, b);
    await this.drop(b, a);
  }

  /** Every iptables rule flushed and every link up. */
  async heal(): Promise<void> {
    for (const ns of this.#rules) await sh(['iptables', '-w', '-F'], ns);
    this.#rules.clear();
    await this.up(this.here);
    for (const party of this.#parties.values()) await this.up(party);
  }

  /** Stops the servers and processes started here, then removes every namespace, link and rule. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const child of this.#children) child.kill('SIGKILL');
    await Promise.allSettled(this.#servers.map((s) => s.stop()));
    removeSync(this.k);
    mine.delete(this.k);
  }
}

/** A Network for the file (or describe block): made in beforeAll, destroyed in afterAll. */
export function useNetwork(): () => Network {
  let network: Network | undefined;
  beforeAll(async () => {
    network = await Network.create();
  });
  afterAll(async () => {
    await network?.destroy();
    network = undefined;
  });
  return () => {
    if (!network) throw new Error('useNetwork(): call the getter inside a test or hook, after its setup');
    return network;
  };
}
