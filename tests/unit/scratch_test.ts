import assert from "node:assert/strict";
import { Scratch } from "../../system/scratch.ts";

Deno.test("a scratch buffer is reused from one take to the next while it is big enough", () => {
  const s = new Scratch({ max: 1 << 20, quietMs: 60_000 });
  const a = s.take(1000);
  assert.equal(a.length, 1000);
  a[0] = 42;
  const b = s.take(500);
  assert.equal(b.length, 500);
  assert.equal(b.buffer, a.buffer);
  assert.equal(b[0], 42);
  s.release();
});

Deno.test("a scratch buffer grows when a take needs more, and keeps the bigger one", () => {
  const s = new Scratch({ max: 1 << 20, quietMs: 60_000 });
  const small = s.take(100);
  const big = s.take(100_000);
  assert.notEqual(big.buffer, small.buffer);
  assert.ok(s.capacity >= 100_000);
  assert.equal(s.take(10).buffer, big.buffer);
  s.release();
  assert.equal(s.capacity, 0);
});

Deno.test("a take above the maximum gets a fresh buffer that is not kept", () => {
  const s = new Scratch({ max: 4096, quietMs: 60_000 });
  const kept = s.take(4096);
  const over = s.take(4097);
  assert.equal(over.length, 4097);
  assert.notEqual(over.buffer, kept.buffer);
  assert.notEqual(s.take(5000).buffer, over.buffer);
  assert.equal(s.take(1).buffer, kept.buffer);
  s.release();
});

Deno.test("a scratch buffer is let go once it has not been used for its quiet time", async () => {
  const s = new Scratch({ max: 1 << 20, quietMs: 20 });
  s.take(1000);
  assert.ok(s.capacity >= 1000);
  // Polled rather than timed to the millisecond: a loaded machine fires timers late.
  const deadline = Date.now() + 10_000;
  while (s.capacity !== 0 && Date.now() < deadline) {
    await new Promise((r) => AbortSignal.timeout(20).addEventListener("abort", r));
  }
  assert.equal(s.capacity, 0);
});
