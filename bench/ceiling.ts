/**
 * The loopback ceiling, for scale: `redis-benchmark` (C, no library in the way) against the same
 * redis-server, in the same run. One connection gives the floor of one round trip; 50 connections the
 * server's throughput.
 */
import { spawn } from 'node:child_process';

export interface CeilingRow {
  label: string;
  clients: number;
  /** Requests per second. */
  rps: number;
  /** ms */
  p50: number;
  p99: number;
}

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-benchmark', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`redis-benchmark: ${err || code}`)),
    );
  });
}

/** `"SET","41152.26","0.023",…` lines of `--csv` (rps, avg, min, p50, p95, p99, max). */
export function parseCsv(text: string): { test: string; rps: number; p50: number; p99: number }[] {
  const rows: { test: string; rps: number; p50: number; p99: number }[] = [];
  for (const line of text.split('\n')) {
    const cells = [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
    if (cells.length < 7 || cells[0] === 'test') continue;
    rows.push({ test: cells[0]!, rps: Number(cells[1]), p50: Number(cells[4]), p99: Number(cells[6]) });
  }
  return rows;
}

export async function ceiling(
  endpoint: { host: string; port: number },
  requests: number,
): Promise<CeilingRow[] | { skipped: string }> {
  const base = ['-h', endpoint.host, '-p', String(endpoint.port), '--csv', '-n', String(requests)];
  const out: CeilingRow[] = [];
  try {
    for (const clients of [1, 50]) {
      const rows = parseCsv(await run([...base, '-c', String(clients), '-t', 'set,get']));
      for (const r of rows) out.push({ label: r.test, clients, rps: r.rps, p50: r.p50, p99: r.p99 });
    }
  } catch (err) {
    return { skipped: `redis-benchmark failed: ${(err as Error).message}` };
  }
  return out;
}
