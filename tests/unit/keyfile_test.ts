import assert from "node:assert/strict";
import {
  escapeValue,
  formatKeyFile,
  KeyFileError,
  loadKeyFile,
  parseKeyFile,
  unescapeValue,
} from "../../cli/keyfile.ts";

const enc = new TextEncoder();
const parse = (text: string) => parseKeyFile(enc.encode(text));

function parseError(text: string): KeyFileError {
  try {
    parse(text);
  } catch (e) {
    assert.ok(e instanceof KeyFileError, `expected KeyFileError, got ${e}`);
    return e;
  }
  assert.fail(`parsing ${JSON.stringify(text)} did not fail`);
}

function readError(read: () => unknown): KeyFileError {
  try {
    read();
  } catch (e) {
    assert.ok(e instanceof KeyFileError, `expected KeyFileError, got ${e}`);
    return e;
  }
  assert.fail("reading did not fail");
}

Deno.test("whitespace around the equals sign and at line start is ignored", () => {
  const kf = parse("  [general]\n   method   =   unix-listen\n\tpath=\t/tmp/s\n");
  assert.equal(kf.getString("general", "method"), "unix-listen");
  assert.equal(kf.getString("general", "path"), "/tmp/s");
});

Deno.test("trailing whitespace stays part of a string value", () => {
  const kf = parse("[general]\nmethod=unix-listen  \n");
  assert.equal(kf.getString("general", "method"), "unix-listen  ");
});

Deno.test("a carriage return before the newline is dropped", () => {
  const kf = parse("[general]\r\nstatedir=a\r\npath=b\r");
  assert.equal(kf.getString("general", "statedir"), "a");
  assert.equal(kf.getString("general", "path"), "b\r", "the last line keeps a lone \\r, as GLib");
});

Deno.test("comments and blank lines are skipped anywhere", () => {
  const kf = parse("# top\n\n   \n[general]\n  # indented comment\nverbose=true\n#x=y\n");
  assert.equal(kf.hasKey("general", "verbose"), true);
  assert.equal(kf.hasKey("general", "#x"), false);
});

Deno.test("the last duplicate key wins and repeated groups merge", () => {
  const kf = parse(
    "[general]\npidfile=/a\n[other]\npidfile=/x\n[general]\npidfile=/b\nstatedir=/s\n",
  );
  assert.equal(kf.getString("general", "pidfile"), "/b");
  assert.equal(kf.getString("general", "statedir"), "/s");
  assert.equal(kf.getString("other", "pidfile"), "/x");
});

Deno.test("translated keys never answer a lookup of the plain key", () => {
  const kf = parse("[general]\npidfile[de]=/q\nstatedir[en_US.UTF-8@euro]=/r\n");
  assert.equal(kf.hasKey("general", "pidfile"), false);
  assert.equal(kf.hasKey("general", "statedir"), false);
});

Deno.test("group lines accept trailing spaces and tabs only", () => {
  assert.equal(parse("[general] \t\nverbose=1\n").getBoolean("general", "verbose"), true);
  assert.equal(
    parseError("[general] x\n").message,
    "Key file contains line “[general] x” which is not a key-value pair, group, or comment",
  );
});

Deno.test("invalid lines give GLib's parse error texts", () => {
  assert.equal(
    parseError("[general]\ngarbage\n").message,
    "Key file contains line “garbage” which is not a key-value pair, group, or comment",
  );
  assert.equal(
    parseError("[general]\n=value\n").message,
    "Key file contains line “=value” which is not a key-value pair, group, or comment",
  );
  assert.equal(parseError("daemon=true\n").message, "Key file does not start with a group");
  assert.equal(parseError("[]\n").message, "Invalid group name: ");
  assert.equal(parseError("[general]\na]b=1\n").message, "Invalid key name: a]b");
  assert.equal(parseError("[general]\nkey[de=1\n").message, "Invalid key name: key[de");
  assert.equal(parseError("[general]\nkey[d e]=1\n").message, "Invalid key name: key[d e]");
  assert.equal(parseError("[general]\ngarbage\n").kind, "parse");
});

Deno.test("an unsupported Encoding key in the first group is an error", () => {
  assert.equal(
    parseError("[general]\nEncoding=latin1\n").message,
    "Key file contains unsupported encoding “latin1”",
  );
  assert.equal(parse("[general]\nEncoding=utf-8\n").hasKey("general", "Encoding"), true);
  assert.equal(parse("[a]\n[b]\nEncoding=latin1\n").hasKey("b", "Encoding"), true);
});

Deno.test("string escapes decode as GLib's", () => {
  assert.equal(unescapeValue("\\s/a\\tb\\\\c\\n\\r"), " /a\tb\\c\n\r");
  assert.equal(
    parse("[general]\npath=\\s x\n").getString("general", "path"),
    "  x",
  );
});

Deno.test("a bad escape makes the value uninterpretable", () => {
  const kf = parse("[general]\npath=/a\\x\nlogfile=/b\\\n");
  const expected = (k: string) =>
    `Key file contains key “${k}” which has a value that cannot be interpreted.`;
  assert.equal(readError(() => kf.getString("general", "path")).message, expected("path"));
  assert.equal(readError(() => kf.getString("general", "logfile")).message, expected("logfile"));
  assert.equal(readError(() => kf.getString("general", "path")).kind, "invalid-value");
});

Deno.test("booleans accept true, false, 1 and 0 with trailing whitespace only", () => {
  const kf = parse(
    "[g]\na=true\nb=false\nc=1\nd=0\ne=true \nf=TRUE\ng=yes\nh=2\ni=truex\n",
  );
  assert.equal(kf.getBoolean("g", "a"), true);
  assert.equal(kf.getBoolean("g", "b"), false);
  assert.equal(kf.getBoolean("g", "c"), true);
  assert.equal(kf.getBoolean("g", "d"), false);
  assert.equal(kf.getBoolean("g", "e"), true);
  for (const k of ["f", "g", "h", "i"]) {
    assert.equal(
      readError(() => kf.getBoolean("g", k)).message,
      `Key file contains key “${k}” which has a value that cannot be interpreted.`,
    );
  }
});

Deno.test("a value that is not UTF-8 is reported when read", () => {
  const bytes = new Uint8Array([...enc.encode("[general]\npath=/a"), 0xff, 0x0a]);
  const kf = parseKeyFile(bytes);
  assert.equal(
    readError(() => kf.getString("general", "path")).message,
    "Key file contains key “path” with value “/a\uFFFD” which is not UTF-8",
  );
});

Deno.test("non-ASCII keys and values round-trip", () => {
  const kf = parse("[general]\nlogfile=/tmp/журнал\nключ=1\n");
  assert.equal(kf.getString("general", "logfile"), "/tmp/журнал");
  assert.equal(kf.getBoolean("general", "ключ"), true);
});

Deno.test("escaping for output protects leading blanks, line breaks and backslashes", () => {
  assert.equal(escapeValue(" \ta b\tc"), "\\s\\ta b\tc");
  assert.equal(escapeValue("x\ny\r\\z "), "x\\ny\\r\\\\z ");
  assert.equal(escapeValue("\n "), "\\n\\s", "a newline does not end the leading blanks");
  assert.equal(escapeValue("\\ "), "\\\\ ");
  assert.equal(escapeValue(""), "");
});

Deno.test("escaping and unescaping are inverse", () => {
  for (const s of ["", " lead", "\ttab", "a\nb", "c:\\dir", "trail  ", "\r\n", "  \\ x"]) {
    assert.equal(unescapeValue(escapeValue(s)), s);
  }
});

Deno.test("formatting writes one group as g_key_file_to_data", () => {
  assert.equal(
    formatKeyFile("general", [["daemon", "false"], ["path", " /x"]]),
    "[general]\ndaemon=false\npath=\\s/x\n",
  );
});

Deno.test("loading a missing file fails as not-found with strerror text", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const e = await loadKeyFile(`${dir}/missing.conf`).then(
      () => assert.fail("loaded a missing file"),
      (e: unknown) => e,
    );
    assert.ok(e instanceof KeyFileError);
    assert.equal(e.kind, "not-found");
    assert.equal(e.message, "No such file or directory");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loading a directory fails with Not a regular file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const e = await loadKeyFile(dir).then(() => assert.fail("loaded a directory"), (e) => e);
    assert.ok(e instanceof KeyFileError);
    assert.equal(e.kind, "parse");
    assert.equal(e.message, "Not a regular file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loading a file parses its content", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/qga.conf`, "[general]\nmethod=isa-serial\n");
    const kf = await loadKeyFile(`${dir}/qga.conf`);
    assert.equal(kf.getString("general", "method"), "isa-serial");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
