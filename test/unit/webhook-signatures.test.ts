// Webhook signature verification (functions/webhook/signatures.ts) against the providers' published test
// vectors and an independently computed HMAC (openssl), plus the ways a delivery is forged or replayed.
import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LOCAL_WEBHOOK_SECRETS } from '../../dev/start.js';
import {
  signGithub,
  signStandardWebhook,
  signStripe,
  verifyGithub,
  verifyStandardWebhook,
  verifyStripe,
} from '../../functions/webhook/signatures.js';

vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

afterEach(() => {
  vi.mocked(crypto.timingSafeEqual).mockClear();
});

describe('GitHub X-Hub-Signature-256', () => {
  // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
  const secret = "It's a Secret to Everybody";
  const body = 'Hello, World!';
  const published = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';

  it("accepts GitHub's published example and signs it identically", () => {
    expect(verifyGithub(body, { 'x-hub-signature-256': published }, secret)).toEqual({ ok: true });
    expect(
      verifyGithub(
        Buffer.from(body),
        { 'x-hub-signature-256': published.toUpperCase().replace('SHA256', 'sha256') },
        secret,
      ),
    ).toEqual({ ok: true });
    expect(signGithub(body, secret)).toEqual({ 'x-hub-signature-256': published });
  });

  it('rejects a wrong secret, a changed body, a missing or malformed header', () => {
    const headers = { 'x-hub-signature-256': published };
    expect(verifyGithub(body, headers, 'another secret')).toEqual({
      ok: false,
      reason: 'signature mismatch',
    });
    expect(verifyGithub('Hello, World?', headers, secret)).toEqual({
      ok: false,
      reason: 'signature mismatch',
    });
    expect(verifyGithub(body, {}, secret)).toEqual({ ok: false, reason: 'missing X-Hub-Signature-256' });
    for (const bad of [
      'sha1=757107ea',
      published.slice(0, -2),
      `${published}00`,
      'sha256=',
      published.slice(7),
    ]) {
      expect(verifyGithub(body, { 'x-hub-signature-256': bad }, secret)).toEqual({
        ok: false,
        reason: 'malformed X-Hub-Signature-256',
      });
    }
  });

  it('compares in constant time', () => {
    verifyGithub(body, { 'x-hub-signature-256': published.replace('757', '000') }, secret);
    expect(crypto.timingSafeEqual).toHaveBeenCalledTimes(1);
  });
});

describe('Stripe-Signature', () => {
  const secret = 'whsec_stripe_test';
  const body = '{"id":"evt_1","type":"charge.succeeded"}';
  const t = 1_700_000_000;
  // openssl: printf '1700000000.<body>' | openssl dgst -sha256 -hmac whsec_stripe_test
  const v1 = '6f3356ce5701dd6223636ac876d42e3d64a5c998dc193818a0dba9df61942206';
  const at = (seconds: number) => ({ nowMs: seconds * 1000 });

  it('accepts a valid signature within the tolerance and signs identically', () => {
    const header = { 'stripe-signature': `t=${t},v1=${v1}` };
    expect(verifyStripe(body, header, secret, at(t))).toEqual({ ok: true });
    expect(verifyStripe(body, header, secret, at(t + 300))).toEqual({ ok: true });
    expect(signStripe(body, secret, t)).toEqual(header);
  });

  it('accepts any of several v1 signatures (secret rotation) and ignores v0', () => {
    const other = 'a'.repeat(64);
    const header = { 'stripe-signature': `t=${t},v1=${other},v0=${v1},v1=${v1}` };
    expect(verifyStripe(body, header, secret, at(t))).toEqual({ ok: true });
    expect(crypto.timingSafeEqual).toHaveBeenCalledTimes(2);
    expect(verifyStripe(body, { 'stripe-signature': `t=${t},v0=${v1}` }, secret, at(t))).toEqual({
      ok: false,
      reason: 'Stripe-Signature has no v1 signature',
    });
  });

  it('rejects a replay outside the tolerance, either way, and honours a custom tolerance', () => {
    const header = { 'stripe-signature': `t=${t},v1=${v1}` };
    expect(verifyStripe(body, header, secret, at(t + 301))).toEqual({
      ok: false,
      reason: 'timestamp too old',
    });
    expect(verifyStripe(body, header, secret, at(t - 301))).toEqual({
      ok: false,
      reason: 'timestamp in the future',
    });
    expect(verifyStripe(body, header, secret, { nowMs: t * 1000 + 10_001, toleranceMs: 10_000 })).toEqual({
      ok: false,
      reason: 'timestamp too old',
    });
  });

  it('rejects a changed body, a moved timestamp, a wrong secret, and malformed headers', () => {
    const mismatch = { ok: false, reason: 'signature mismatch' };
    expect(verifyStripe(`${body} `, { 'stripe-signature': `t=${t},v1=${v1}` }, secret, at(t))).toEqual(
      mismatch,
    );
    // The timestamp is signed: moving it to pass the tolerance check breaks the signature.
    expect(
      verifyStripe(body, { 'stripe-signature': `t=${t + 1000},v1=${v1}` }, secret, at(t + 1000)),
    ).toEqual(mismatch);
    expect(verifyStripe(body, { 'stripe-signature': `t=${t},v1=${v1}` }, 'whsec_other', at(t))).toEqual(
      mismatch,
    );
    expect(verifyStripe(body, {}, secret, at(t))).toEqual({ ok: false, reason: 'missing Stripe-Signature' });
    for (const bad of [`v1=${v1}`, `t=-5,v1=${v1}`, `t=1e9,v1=${v1}`, `t=,v1=${v1}`]) {
      expect(verifyStripe(body, { 'stripe-signature': bad }, secret, at(t))).toEqual({
        ok: false,
        reason: 'Stripe-Signature has no valid timestamp',
      });
    }
  });

  it('reports a forged signature as a mismatch even when its timestamp is stale', () => {
    const header = { 'stripe-signature': `t=${t},v1=${'0'.repeat(64)}` };
    expect(verifyStripe(body, header, secret, at(t + 10_000))).toEqual({
      ok: false,
      reason: 'signature mismatch',
    });
  });
});

describe('Standard Webhooks', () => {
  // The test vector of the Standard Webhooks reference libraries (standard-webhooks/standard-webhooks).
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const id = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
  const t = 1_614_265_330;
  const body = '{"test": 2432232314}';
  const signature = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';
  const headers = { 'webhook-id': id, 'webhook-timestamp': String(t), 'webhook-signature': signature };
  const at = (seconds: number) => ({ nowMs: seconds * 1000 });

  it('accepts the reference vector and signs identically', () => {
    expect(verifyStandardWebhook(body, headers, secret, at(t))).toEqual({ ok: true });
    expect(signStandardWebhook(body, secret, id, t)).toEqual(headers);
  });

  it('accepts one valid signature among several (space separated, unknown versions skipped)', () => {
    const many = { ...headers, 'webhook-signature': `v1a,abc v1,${'A'.repeat(43)}= ${signature}` };
    expect(verifyStandardWebhook(body, many, secret, at(t))).toEqual({ ok: true });
    expect(crypto.timingSafeEqual).toHaveBeenCalledTimes(2);
  });

  it('binds the id and the timestamp into the signature', () => {
    const mismatch = { ok: false, reason: 'signature mismatch' };
    expect(verifyStandardWebhook(body, { ...headers, 'webhook-id': 'msg_other' }, secret, at(t))).toEqual(
      mismatch,
    );
    expect(
      verifyStandardWebhook(body, { ...headers, 'webhook-timestamp': String(t + 1) }, secret, at(t)),
    ).toEqual(mismatch);
    expect(verifyStandardWebhook('{"test": 2432232315}', headers, secret, at(t))).toEqual(mismatch);
    expect(verifyStandardWebhook(body, headers, 'whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', at(t))).toEqual(
      mismatch,
    );
  });

  it('rejects a stale or future timestamp, missing headers and a malformed timestamp', () => {
    expect(verifyStandardWebhook(body, headers, secret, at(t + 301))).toEqual({
      ok: false,
      reason: 'timestamp too old',
    });
    expect(verifyStandardWebhook(body, headers, secret, at(t - 301))).toEqual({
      ok: false,
      reason: 'timestamp in the future',
    });
    const { 'webhook-id': _, ...withoutId } = headers;
    expect(verifyStandardWebhook(body, withoutId, secret, at(t)).ok).toBe(false);
    expect(verifyStandardWebhook(body, { ...headers, 'webhook-timestamp': '16e8' }, secret, at(t))).toEqual({
      ok: false,
      reason: 'malformed webhook-timestamp',
    });
  });
});

describe('functions/webhook/event.json', () => {
  it('is a delivery signed with the local stage secret (so invoking it locally gets past the signature)', () => {
    const event = JSON.parse(
      readFileSync(new URL('../../functions/webhook/event.json', import.meta.url), 'utf8'),
    );
    expect(event.pathParameters).toEqual({ provider: 'github' });
    expect(verifyGithub(event.body, event.headers, LOCAL_WEBHOOK_SECRETS.github)).toEqual({ ok: true });
    expect(event.headers['x-github-delivery']).toBeTruthy();
  });
});
