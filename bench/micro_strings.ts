/**
 * Micro-measurements behind docs/performance.md: what the big-string operations
 * of a 48 MiB guest-file-read or guest-file-write cost in this Deno, outside the
 * profiler (whose `RegExp:` attribution can mislead), and what deno-qga's own
 * GLib-compatible base64 decoder (protocol/base64.ts) costs on them.
 *
 * ```sh
 * ./node_modules/.bin/deno run bench/micro_strings.ts
 * ```
 *
 * @module
 */

import { decodeQemuBase64, encodeBase64 } from "../protocol/base64.ts";

const MiB = 1024 * 1024;

function time(name: string, f: () => unknown, reps = 5): void {
  const xs: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    f();
    xs.push(performance.now() - t0);
  }
  xs.sort((a, b) => a - b);
  console.log(`${name.padEnd(58)} ${xs[reps >> 1]!.toFixed(1).padStart(7)} ms (median of ${reps})`);
}

if (import.meta.main) {
  const raw = new Uint8Array(48 * MiB);
  for (let o = 0; o < raw.length; o += 65536) crypto.getRandomValues(raw.subarray(o, o + 65536));
  const b64 = raw.toBase64();
  const bytes = new TextEncoder().encode(b64);
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder();
  const encoder = new TextEncoder();
  const out = new Uint8Array(b64.length + 100);
  const prefix = '{"return": {"count": 50331648, "buf-b64": "';
  const suffix = '", "eof": false}}';
  const cons = () => prefix + b64 + suffix;

  console.log(`48 MiB of random data, ${(b64.length / MiB).toFixed(0)} MiB of base64`);
  time("toBase64 (48 MiB)", () => raw.toBase64());
  time("TextDecoder latin1 .decode (64 MiB ASCII)", () => latin1.decode(bytes));
  time("TextDecoder utf-8 .decode (64 MiB ASCII)", () => utf8.decode(bytes));
  time(
    "quoteString PLAIN regex ^[...]*$ .test (64 MiB)",
    () => /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/.test(b64),
  );
  time("single-class regex /[ \\t\\r\\f]/ .test (64 MiB)", () => /[ \t\r\f]/.test(b64));
  time("encodeInto, flat string (64 MiB)", () => encoder.encodeInto(b64, out));
  time("encodeInto, cons string prefix + b64 + suffix", () => encoder.encodeInto(cons(), out));
  time("encodeInto, three pieces one after the other", () => {
    let o = encoder.encodeInto(prefix, out).written;
    o += encoder.encodeInto(b64, out.subarray(o)).written;
    encoder.encodeInto(suffix, out.subarray(o));
  });
  time("Uint8Array.fromBase64 (64 MiB)", () => Uint8Array.fromBase64(b64));
  time(
    "setFromBase64 into a preallocated buffer",
    () => new Uint8Array(raw.length).setFromBase64(b64),
  );
  time("encodeBase64 (48 MiB)", () => encodeBase64(raw));
  time("decodeQemuBase64 (64 MiB of canonical base64)", () => decodeQemuBase64(b64));
  const wrapped = b64.replace(/.{76}/g, "$&\n") + "\n";
  time("decodeQemuBase64 (the same in 76-column lines)", () => decodeQemuBase64(wrapped));

  // One 1 MiB guest-file-read: its base64 encoded into a fresh buffer (a fresh mmap, whose
  // page faults the first write pays) or into one reused from call to call (system/scratch.ts).
  const small = raw.subarray(0, MiB);
  const small64 = small.toBase64();
  const kept = new Uint8Array(small64.length);
  console.log("1 MiB of the same data, as one guest-file-read at 1 MiB per call handles it");
  time("toBase64 (1 MiB)", () => small.toBase64(), 21);
  time("encodeInto a fresh buffer (1.3 MiB of base64)", () => {
    encoder.encodeInto(small64, new Uint8Array(small64.length));
  }, 21);
  time("encodeInto a reused buffer (1.3 MiB of base64)", () => {
    encoder.encodeInto(small64, kept);
  }, 21);
}
