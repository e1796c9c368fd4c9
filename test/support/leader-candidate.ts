/**
 * A leader-election candidate as its own process, for tests that kill (-9), freeze (SIGSTOP) or stop (SIGTERM)
 * a leader. Prints one JSON line per event on stdout: ready, elected {term}, deposed {term, reason},
 * act {term} (every --act-every-ms while it leads, after checking `election.leadership`).
 *
 *   node --import tsx test/support/leader-candidate.ts --ports 6379[,6380,6381] --id a --lease-ms 1000
 *
 * One port: a Lock on that server; several: a Redlock over them.
 */
import { parseArgs } from 'node:util';
import { createLock, createRedlock, elect, type LockLostError } from '../../layers/oncely/src/index.js';
import { redisStore } from '../../layers/oncely/src/ioredis.js';

const { values } = parseArgs({
  options: {
    ports: { type: 'string' },
    id: { type: 'string' },
    name: { type: 'string', default: 'leader-test' },
    'lease-ms': { type: 'string', default: '1000' },
    'retry-every-ms': { type: 'string' },
    'act-every-ms': { type: 'string', default: '20' },
  },
});
const id = values.id ?? `candidate-${process.pid}`;
const ports = (values.ports ?? '').split(',').filter(Boolean).map(Number);
const out = (event: string, extra: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ event, id, at: Date.now(), ...extra })}\n`);

const stores = ports.map((port) => redisStore({ host: '127.0.0.1', port, timeoutMs: 500 }));
const lock = stores.length === 1 ? createLock(stores[0]!) : createRedlock(stores, { nodeTimeoutMs: 250 });
const election = elect({
  lock,
  name: values.name!,
  id,
  ttlMs: Number(values['lease-ms']),
  ...(values['retry-every-ms'] ? { retryEveryMs: Number(values['retry-every-ms']) } : {}),
  onElected: (leadership) => {
    out('elected', { term: leadership.term });
    leadership.signal.addEventListener('abort', () =>
      out('deposed', { term: leadership.term, reason: (leadership.signal.reason as LockLostError).reason }),
    );
  },
});
setInterval(() => {
  const leadership = election.leadership;
  if (leadership) out('act', { term: leadership.term });
}, Number(values['act-every-ms']));
out('ready');
