/** What every cold-start entry receives: the stack's endpoints and a key nobody holds. */
export interface ColdConfig {
  /** REST gateway URL and token. */
  url: string;
  token: string;
  /** redis-server over TCP. */
  host: string;
  port: number;
  key: string;
}

/** Each entry exports `firstLock`: create the client, take and give back one lock (or run one call). */
export type FirstLock = (cfg: ColdConfig) => Promise<void>;
