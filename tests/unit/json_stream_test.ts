import assert from "node:assert/strict";
import { JsonStream, type StreamEvent } from "../../protocol/json_stream.ts";
import { writeValue } from "../../protocol/json_writer.ts";
import { QNum } from "../../protocol/value.ts";

const enc = new TextEncoder();

function bytes(s: string): Uint8Array {
  // "\xNN" in test strings stands for the raw byte NN.
  const parts: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\\" && s[i + 1] === "x") {
      parts.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      parts.push(...enc.encode(s[i]!));
    }
  }
  return new Uint8Array(parts);
}

function show(e: StreamEvent): string {
  return e.error !== undefined ? `error: ${e.error}` : `value: ${writeValue(e.value, undefined)}`;
}

function run(chunks: Uint8Array[]): string[] {
  const out: string[] = [];
  const s = new JsonStream((e) => out.push(show(e)));
  for (const c of chunks) s.feed(c);
  return out;
}

const CASES: [string, string[]][] = [
  ['{"execute":"guest-ping"}', ['value: {"execute": "guest-ping"}']],
  ["{'execute':'guest-ping'}", ['value: {"execute": "guest-ping"}']],
  ['{"execute":guest-ping}', [
    "error: JSON parse error, stray '-p'",
    "error: JSON parse error, expecting value",
  ]],
  ["42 ", ["value: 42"]],
  ["\\xff", ["error: JSON parse error, stray '\ufffd'"]],
  ["\\x00", ["error: JSON parse error, stray ''"]],
  ['{"a":1,}', ["error: JSON parse error, expecting value"]],
  ['{"a" 1}', ["error: JSON parse error, missing : in object pair"]],
  ["{1:2}", ["error: JSON parse error, key is not a string in object"]],
  ['{"a":1,"a":2}', ["error: JSON parse error, duplicate key"]],
  ["[1 2]", ["error: JSON parse error, expected separator in list"]],
  ["foo ", ["error: JSON parse error, invalid keyword 'foo'"]],
  ['"\\q"', ["error: JSON parse error, invalid escape sequence in string"]],
  ['"\\u0041\\u00"', ['error: JSON parse error, \\u00" is not a valid Unicode character']],
  ['"\\ud800"', ["error: JSON parse error, \\ud800 is not a valid Unicode character"]],
  ['"\\xc3("', ["error: JSON parse error, invalid UTF-8 sequence in string"]],
  ['"\\xc0\\x80"', ['value: "\\u0000"']],
  ['"\\ud83d\\ude00"', ['value: "\\uD83D\\uDE00"']],
  ["{}}", ["value: {}", "error: JSON parse error, expecting value"]],
  ['{"execute":"guest-pi\\xff', ["error: JSON parse error, stray '\"guest-pi\ufffd'"]],
  ["01", ["error: JSON parse error, stray '01'"]],
  ["-0 ", ["value: 0"]],
  ["18446744073709551615 ", ["value: 18446744073709551615"]],
  ["-9223372036854775809 ", ["value: -9.2233720368547758e+18"]],
  ["0.1 1e400 ", ["value: 0.10000000000000001", "value: inf"]],
  ['"a\tb"', ["error: JSON parse error, stray '\"a\t'"]],
  // Error recovery skips to a structural byte, a control byte, 0xFE or 0xFF; a 0xFE or
  // 0xFF then is a stray byte of its own, so every one is answered (json/several 0xFF
  // bytes in the differential corpus shows qemu-ga doing the same).
  ["@abc\\xff", ["error: JSON parse error, stray '@'", "error: JSON parse error, stray '\ufffd'"]],
  ["@\\xfe", ["error: JSON parse error, stray '@'", "error: JSON parse error, stray '\ufffd'"]],
  ["@a\\xff42 ", ["error: JSON parse error, stray '@'", "error: JSON parse error, stray '\ufffd'"]],
  ["\\xff\\xff\\xff{}", [
    "error: JSON parse error, stray '\ufffd'",
    "error: JSON parse error, stray '\ufffd'",
    "error: JSON parse error, stray '\ufffd'",
    "value: {}",
  ]],
  ["@abc\n42 ", ["error: JSON parse error, stray '@'", "value: 42"]],
  ["@abc\t42 {}", ["error: JSON parse error, stray '@'", "value: {}"]],
];

Deno.test("the stream answers each case as qemu-ga does", () => {
  for (const [input, expected] of CASES) {
    assert.deepEqual(run([bytes(input)]), expected, input);
  }
});

Deno.test("input split at every byte gives the same events as in one piece", () => {
  for (const [input] of CASES) {
    const b = bytes(input);
    const whole = run([b]);
    for (let cut = 1; cut < b.length; cut++) {
      assert.deepEqual(run([b.subarray(0, cut), b.subarray(cut)]), whole, `${input} cut at ${cut}`);
    }
    assert.deepEqual(run([...b].map((x) => new Uint8Array([x]))), whole, `${input} byte by byte`);
  }
});

Deno.test("input split at random points gives the same events", () => {
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
  const all = bytes(CASES.map((c) => c[0]).join(" "));
  const whole = run([all]);
  for (let round = 0; round < 200; round++) {
    const chunks: Uint8Array[] = [];
    let i = 0;
    while (i < all.length) {
      const n = 1 + Math.floor(rnd() * 16);
      chunks.push(all.subarray(i, i + n));
      i += n;
    }
    assert.deepEqual(run(chunks), whole);
  }
});

Deno.test("several requests in one write are emitted in order", () => {
  assert.deepEqual(
    run([bytes('{"execute":"guest-ping"}{"execute":"guest-sync","arguments":{"id":1}}\n\n  [3]')]),
    [
      'value: {"execute": "guest-ping"}',
      'value: {"execute": "guest-sync", "arguments": {"id": 1}}',
      "value: [3]",
    ],
  );
});

Deno.test("nesting 1024 is accepted and 1025 is refused", () => {
  assert.deepEqual(run([bytes("[".repeat(1024) + "]".repeat(1024))]), [
    `value: ${"[".repeat(1024)}${"]".repeat(1024)}`,
  ]);
  const deep = run([bytes("[".repeat(1025))]);
  assert.equal(deep[0], "error: JSON nesting depth limit exceeded");
});

Deno.test("a token over the size limit is refused and the rest is lexed afresh", () => {
  const out: string[] = [];
  const s = new JsonStream((e) => out.push(show(e)), { maxTokenSize: 16 });
  s.feed(bytes('"' + "a".repeat(20) + '" {"execute":"guest-ping"}'));
  assert.equal(out[0], "error: JSON token size limit exceeded");
  // The closing quote then opens a new string that swallows the request, as in qemu-ga.
  assert.ok(out.length >= 1);
  assert.ok(!out.includes('value: {"execute": "guest-ping"}'));
});

Deno.test("numbers keep qemu's kinds", () => {
  const vals: unknown[] = [];
  const s = new JsonStream((e) => vals.push(e.value));
  s.feed(bytes("9223372036854775807 9223372036854775808 1.0 "));
  assert.equal((vals[0] as QNum).kind, "int");
  assert.equal((vals[1] as QNum).kind, "uint");
  assert.equal((vals[2] as QNum).kind, "double");
});
