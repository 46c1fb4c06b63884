import assert from "node:assert/strict";
import { BASE64_INVALID, decodeQemuBase64, encodeBase64 } from "../../protocol/base64.ts";
import { QgaError } from "../../protocol/errors.ts";

const text = (b: Uint8Array) => String.fromCharCode(...b);

// qga-reference.md §3.5, verified there against libglib 2.74 and qemu-ga 7.2.22.
const TABLE: [string, string][] = [
  ["SGVsbG8", "Hel"],
  ["SGVsbG8=", "Hello"],
  ["SGVsbG8==", "Hello"],
  ["SGVs\nbG8=", "Hello"],
  ["S", ""],
  ["SG", ""],
  ["SGV", ""],
  ["", ""],
  ["SGVsbA=", "Hel"],
  ["=SGV", "\x01!\x95"],
  ["====", "\x00"],
  ["SGVsbG8=SGVs", "HelloHel"],
];

for (const [input, expected] of TABLE) {
  Deno.test(`base64 ${JSON.stringify(input)} decodes to ${JSON.stringify(expected)} as GLib does`, () => {
    assert.equal(text(decodeQemuBase64(input)), expected);
  });
}

for (const bad of ["!!!", "SGVs bG8=", "SGVsbG8=\r\n", "-_-_", "SGVsbG8=\t"]) {
  Deno.test(`base64 ${JSON.stringify(bad)} is refused with qemu-ga's text`, () => {
    assert.throws(
      () => decodeQemuBase64(bad),
      (e: unknown) => e instanceof QgaError && e.message === BASE64_INVALID,
    );
  });
}

Deno.test("base64 stops at an embedded NUL like qemu's C string does", () => {
  assert.equal(text(decodeQemuBase64("SGVs\0!!!")), "Hel");
});

Deno.test("base64 with Perl's 76-column line breaks decodes fully", () => {
  const data = new Uint8Array(1000).map((_, i) => (i * 7) & 0xff);
  const wrapped = encodeBase64(data).replace(/.{76}/g, "$&\n") + "\n";
  assert.deepEqual(decodeQemuBase64(wrapped), data);
});

// How long this takes is measured by bench/micro_strings.ts, not asserted here.
Deno.test("base64 of 48 MiB (the largest guest-file-read) decodes to the same bytes", async () => {
  const data = new Uint8Array(48 * 1024 * 1024);
  for (let at = 0; at < data.length; at += 65536) {
    crypto.getRandomValues(data.subarray(at, at + 65536));
  }
  const out = decodeQemuBase64(encodeBase64(data));
  assert.equal(out.length, data.length);
  const digest = async (b: Uint8Array<ArrayBuffer>) =>
    new Uint8Array(await crypto.subtle.digest("SHA-256", b)).toHex();
  assert.equal(await digest(out.slice()), await digest(data));
});

Deno.test("base64 slow path agrees with the native decoder on canonical input", () => {
  // a '=' in the third position forces the GLib loop; compare its first quartets
  const data = new Uint8Array(300).map((_, i) => (i * 13 + 5) & 0xff);
  const s = encodeBase64(data);
  assert.deepEqual(decodeQemuBase64(s + "AB=C").subarray(0, 300), data);
});
