/**
 * The names of the TCP stores (in errors and logs), apart from their code: fromEnv() names a TCP store before
 * the TCP transport's chunk is loaded (transport/deferred.ts).
 */

function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 6379}`;
  } catch {
    return 'invalid-url';
  }
}

/** `redis(host:port)`, from a URL or host and port. */
export function redisName(options: { url?: string; host?: string; port?: number }): string {
  const where = options.url
    ? describeUrl(options.url)
    : `${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
  return `redis(${where})`;
}

/** `cluster(host:port,…)`, from the seed nodes. */
export function clusterName(nodes: readonly { host: string; port: number }[]): string {
  const first = nodes[0];
  return `cluster(${first ? `${first.host}:${first.port}` : '?'}${nodes.length > 1 ? ',…' : ''})`;
}
