/**
 * redlock 5.0.0-beta.2 ships types at dist/index.d.ts but its package.json "exports" hides them from
 * moduleResolution "Bundler": the part of its API the benchmark uses.
 */
declare module 'redlock' {
  import type { Cluster, Redis } from 'ioredis';

  export interface Settings {
    driftFactor?: number;
    retryCount?: number;
    retryDelay?: number;
    retryJitter?: number;
    automaticExtensionThreshold?: number;
  }

  export class Lock {
    readonly resources: string[];
    readonly value: string;
    expiration: number;
    release(): Promise<unknown>;
    extend(duration: number): Promise<Lock>;
  }

  export default class Redlock {
    constructor(clients: Iterable<Redis | Cluster>, settings?: Settings);
    acquire(resources: string[], duration: number, settings?: Settings): Promise<Lock>;
    release(lock: Lock, settings?: Settings): Promise<unknown>;
    extend(existing: Lock, duration: number, settings?: Settings): Promise<Lock>;
    quit(): Promise<void>;
  }
}
