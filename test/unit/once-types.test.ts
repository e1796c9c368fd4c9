import type { Context } from 'aws-lambda';
import { describe, expectTypeOf, it } from 'vitest';
import { withOnce } from '../../layers/oncely/src/index.js';
import { FakeStore } from '../support/fake-store.js';

// Checked by tsc (npm test typechecks the tests): a policy that can answer undefined says so in the type.
describe('withOnce return types', () => {
  const store = new FakeStore();
  const handler = async (e: { id: string }) => e.id.length;
  it('throw / wait (the default) resolve to the handler result', () => {
    expectTypeOf(withOnce(handler, { store, key: (e) => e.id })).toEqualTypeOf<
      (event: { id: string }, context: Context) => Promise<number>
    >();
    expectTypeOf(
      withOnce(handler, { store, key: (e) => e.id, duplicate: 'wait' }),
    ).returns.resolves.toEqualTypeOf<number>();
  });
  it("'skip' may resolve to undefined", () => {
    expectTypeOf(
      withOnce(handler, { store, key: (e) => e.id, duplicate: 'skip' }),
    ).returns.resolves.toEqualTypeOf<number | undefined>();
  });
});
