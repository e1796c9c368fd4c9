import type { Store, StoreKind } from './types.js';

/**
 * A store whose code is a chunk of its own: fromEnv() builds its TCP stores this way, so that the REST path
 * never parses the TCP transport (tcp-store.ts, cluster recovery, the replica wait). The chunk starts loading
 * when the store is created (at module scope, that is Lambda's init phase, as before); `kind` and `name` are
 * known at once, and a call that comes before the chunk waits for it once, then goes straight to the store.
 */
export function deferredStore(kind: StoreKind, name: string, load: () => Promise<Store>): Store {
  let loaded: Store | undefined;
  let loading: Promise<Store> | undefined;
  const get = () =>
    (loading ??= load().then(
      (store) => {
        loaded = store;
        return store;
      },
      (err: unknown) => {
        loading = undefined;
        throw err;
      },
    ));
  get().catch(() => undefined); // the first call sees a failure again (and retries the load)
  return {
    kind,
    name,
    run: (script, keys, args) =>
      loaded ? loaded.run(script, keys, args) : get().then((s) => s.run(script, keys, args)),
    runMany: (calls) => (loaded ? loaded.runMany(calls) : get().then((s) => s.runMany(calls))),
    async *scan(match, count) {
      const store = await get();
      if (store.scan) yield* store.scan(match, count);
    },
    async close() {
      if (loading) await (await loading.catch(() => undefined))?.close();
    },
  };
}
