/**
 * The differential corpus: request sequences played byte for byte against qemu-ga and
 * deno-qga. No expected reply is written here: the reference is qemu-ga, asked live.
 * `expect` only lists substrings the qemu-ga transcript must contain, so that an entry
 * that silently stopped testing what its name says (a typo in the request) fails.
 *
 * Sources: qga-reference.md Appendix B (`b/…`), §5 test-qga.c (`qga/…`), §1.2 lexer and
 * parser (`json/…`), §1.3 request form (`req/…`), §1.6 argument validation (`args/…`),
 * §2.3 Files and §3.3-3.5 (`file/…`), §1.1 connections (`conn/…`), other read-only
 * commands (`cmd/…`).
 *
 * @module
 */

import type { StartOptions } from "../helpers/agents.ts";
import { DANGEROUS_COMMANDS } from "../helpers/agents.ts";
import { cat, type Data, raw, type Step, type Vars } from "./harness.ts";

/** One request sequence. */
export interface Entry {
  readonly name: string;
  readonly steps: readonly Step[];
  /**
   * "shared": the shared pair of agents (started with `-b` {@link DANGEROUS_COMMANDS});
   * the parser is resynchronised after the entry. "fresh": a pair of its own, started
   * with `start` (the block list is always added).
   */
  readonly instance: "shared" | "fresh";
  readonly start?: StartOptions;
  /** Names of {@link MASKS} applied to both transcripts. */
  readonly masks?: readonly string[];
  /** A comparison other than bytes. */
  readonly compare?: "guest-info";
  /** Substrings (escaped form) the qemu-ga transcript must contain. */
  readonly expect?: readonly string[];
  /**
   * Documented, deliberate differences (docs/commands.md), each excusing one reply: the
   * entry still runs, qemu-ga's `expect` is still checked, every other reply must match,
   * and the named reply must be exactly what the difference says deno-qga answers.
   */
  readonly known?: readonly KnownDifference[];
}

/** One reply where deno-qga deliberately answers otherwise than qemu-ga. */
export interface KnownDifference {
  /** The recorded segment: the n-th mark, idle or files step of the entry, from 0. */
  readonly segment: number;
  /** The reply within that segment, from 0 (a files snapshot is one reply). */
  readonly reply: number;
  /** deno-qga's reply there, escaped as in transcripts, after the entry's masks. */
  readonly deno: string;
  /** Why, as docs/commands.md states it. */
  readonly reason: string;
}

/** A normalisation applied to the escaped transcript text. */
export interface Mask {
  readonly re: RegExp;
  readonly with: string;
  readonly reason: string;
}

/**
 * Every mask of the suite. A mask keeps structure and member order and replaces only a
 * value that differs between two correct agents; its pattern accepts only the value's
 * expected shape, so a wrongly typed value still shows as a difference.
 */
export const MASKS: Readonly<Record<string, Mask>> = {
  "time": {
    re: /(\{"return": )\d{16,20}(\})/g,
    with: "$1<ns-time>$2",
    reason:
      "guest-get-time returns the current time in ns; both agents answer at different instants",
  },
  "pid": {
    re: /("pid": )\d+/g,
    with: "$1<pid>",
    reason: "guest-exec returns the pid of a fresh child; pids differ between agents",
  },
  "if-stats": {
    re: /("(?:rx|tx)-(?:bytes|packets|errs|dropped)": )\d+/g,
    with: "$1<counter>",
    reason: "network interface counters move with traffic between the two requests",
  },
  "fs-used": {
    re: /("used-bytes": )\d+/g,
    with: "$1<bytes>",
    reason: "used bytes of mounted filesystems change as tests write temp files",
  },
  "cpustats": {
    re: /("(?:user|nice|system|idle|iowait|irq|softirq|steal|guest|guestnice)": )\d+/g,
    with: "$1<ticks>",
    reason: "cpu tick counters advance between the two requests",
  },
  "diskstats": {
    re:
      /("(?:(?:read|write|discard|flush)-(?:ios|merges|sectors|ticks)|ios-pgr|total-ticks|weight-ticks)": )\d+/g,
    with: "$1<counter>",
    reason: "disk I/O counters advance between the two requests",
  },
};

/**
 * Known 7.2.22 vs 10.2.2 text differences (qga-reference.md §7): deno-qga may follow
 * either version. A deno-qga reply is accepted when it equals qemu-ga's bytes, or when,
 * with the `candidate` rewrites applied to deno-qga's reply (dropping what 10.2 added),
 * it equals qemu-ga's reply with the `reference` rewrites applied (7.2 texts turned into
 * 10.2's). A rewrite never applies to the other agent's reply: two 7.2 texts that 10.2
 * merges (the frozen and the block-list refusals) stay distinct in deno-qga's reply.
 */
export const VERSION_EQUIVALENCES: readonly {
  re: RegExp;
  with: string;
  side: "reference" | "candidate";
  reason: string;
}[] = [
  {
    re: /"Command guest-get-devices has been disabled"/g,
    side: "reference",
    with: '"The command guest-get-devices has not been found"',
    reason: "7.2 registers guest-get-devices disabled on Linux; 10.x does not build it",
  },
  {
    re: /has been disabled: the agent is in frozen state"/g,
    side: "reference",
    with: 'has been disabled: the command is not allowed"',
    reason: "10.x uses one disabled-command text for every reason",
  },
  {
    re: /has been disabled"/g,
    side: "reference",
    with: 'has been disabled: the command is not allowed"',
    reason: "10.x uses one disabled-command text for every reason",
  },
  {
    re: /"Invalid parameter 'pid'"/g,
    side: "reference",
    with: '"PID ld does not exist"',
    reason: "guest-exec-status of an unknown pid (10.x text, including its format bug)",
  },
  {
    re: /Guest agent command failed, error was '([^"]*)'"/g,
    side: "reference",
    with: '$1"',
    reason: "10.x no longer wraps guest-exec spawn and timezone errors",
  },
  {
    re: /"Invalid parameter type for 'capture-output', expected: boolean"/g,
    side: "reference",
    with: "\"Parameter 'capture-output' does not accept value 'bogus'\"",
    reason: "capture-output is a bool in 7.2 and a bool|enum alternate since 8.0",
  },
  {
    re: /"total-bytes-privileged": \d+, /g,
    side: "candidate",
    with: "",
    reason: "GuestFilesystemInfo.total-bytes-privileged exists since 9.1 only",
  },
];

// ---------------------------------------------------------------------------------------
// Builders

/** A request as compact JSON (what libvirt and test-qga.c send). */
function J(execute: string, args?: Record<string, unknown>, id?: unknown): string {
  const req: Record<string, unknown> = { execute };
  if (args !== undefined) req.arguments = args;
  if (id !== undefined) req.id = id;
  return JSON.stringify(req);
}

function w(data: Data, conn?: number): Step {
  return conn === undefined ? { op: "write", data } : { op: "write", conn, data };
}

function mark(capture?: string, conn?: number): Step {
  const s: { op: "mark"; conn?: number; capture?: string } = { op: "mark" };
  if (capture !== undefined) s.capture = capture;
  if (conn !== undefined) s.conn = conn;
  return s;
}

function idle(conn?: number, ms?: number): Step {
  const s: { op: "idle"; conn?: number; ms?: number } = { op: "idle" };
  if (conn !== undefined) s.conn = conn;
  if (ms !== undefined) s.ms = ms;
  return s;
}

type Extra = Omit<Entry, "name" | "steps" | "instance">;

/** Shared instance: write `input`, then a marker. */
function one(name: string, input: Data, extra: Extra = {}): Entry {
  return { name, steps: [w(input), mark()], instance: "shared", ...extra };
}

/** Shared instance: write `input`, read until idle (the parser may be left mid-token). */
function quiet(name: string, input: Data, extra: Extra = {}): Entry {
  return { name, steps: [w(input), idle()], instance: "shared", ...extra };
}

/** Request with an `id` to see how a value is parsed and re-serialized. */
function echoId(idText: string | Uint8Array): Uint8Array {
  return cat('{"execute":"guest-ping","id":', idText, "}");
}

const NOT_FOUND = '"class": "CommandNotFound"';

/** Handle captured as `h` (or another name) by a previous mark. */
function H(v: Vars, name = "h"): number {
  return Number(v[name]);
}

function b64(text: string): string {
  return btoa(text);
}

/** The random id of /qga/sync-delimited (u32, fresh per run, same for both agents). */
const RANDOM_ID = crypto.getRandomValues(new Uint32Array(1))[0]!;
const RANDOM_ID2 = crypto.getRandomValues(new Uint32Array(1))[0]!;

// ---------------------------------------------------------------------------------------
// Appendix B

const appendixB: Entry[] = [
  one("b/ping", '{"execute":"guest-ping"}', { expect: ['{"return": {}}'] }),
  one("b/ping with object id", '{"execute":"guest-ping","id":{"a":[1,2]}}', {
    expect: ['"id": {"a": [1, 2]}'],
  }),
  one("b/sync 123", '{"execute":"guest-sync","arguments":{"id":123}}', {
    expect: ['{"return": 123}'],
  }),
  one("b/sync-delimited 123", '{"execute":"guest-sync-delimited","arguments":{"id":123}}', {
    expect: ['\\xff{"return": 123}'],
  }),
  one("b/unknown command with id", '{"execute":"guest-nope","id":7}', { expect: [NOT_FOUND] }),
  one("b/array at top level", "[1,2]", { expect: ["must be a JSON object"] }),
  one("b/number at top level followed by space", "42 ", { expect: ["must be a JSON object"] }),
  one("b/string at top level", '"str"', { expect: ["must be a JSON object"] }),
  one("b/true at top level followed by space", "true ", { expect: ["must be a JSON object"] }),
  one("b/null at top level followed by space", "null ", { expect: ["must be a JSON object"] }),
  one("b/empty object", "{}", { expect: ["lacks member 'execute'"] }),
  one("b/execute is a number", '{"execute":1}', { expect: ["must be a string"] }),
  one("b/arguments is an array", '{"execute":"guest-ping","arguments":[]}', {
    expect: ["'arguments' must be an object"],
  }),
  one("b/unexpected member with id", '{"execute":"guest-ping","foo":1,"id":5}', {
    expect: ["'foo' is unexpected"],
  }),
  one("b/exec-oob", '{"exec-oob":"guest-ping"}', { expect: ["'exec-oob' is unexpected"] }),
  one("b/unexpected argument", '{"execute":"guest-ping","arguments":{"foo":42}}', {
    expect: ["Parameter 'foo' is unexpected"],
  }),
  one("b/sync without id", '{"execute":"guest-sync"}', { expect: ["Parameter 'id' is missing"] }),
  ...['"1"', "1.0", "1e3", "null", "true", "[1]", "9223372036854775808"].map((v) =>
    one(`b/sync id ${v}`, `{"execute":"guest-sync","arguments":{"id":${v}}}`, {
      expect: ["expected: integer"],
    })
  ),
  one("b/sync id 01", '{"execute":"guest-sync","arguments":{"id":01}}', { expect: ["stray '01'"] }),
  one("b/extra closing brace", '{"execute":"guest-ping"}}', { expect: ["expecting value"] }),
  one("b/at sign", "@", { expect: ["stray '@'"] }),
  one("b/lone 0xFF", raw("\xff"), { expect: ["stray '\\\\uFFFD'"] }),
  one("b/lone NUL", raw("\x00"), { expect: ["stray ''"] }),
  one("b/TAB inside a string", '{"execute":"guest-ping","id":"a\tb"}', { expect: ["stray"] }),
  one("b/single-quoted request", "{'execute':'guest-ping'}", { expect: ['{"return": {}}'] }),
  one("b/exec arg element of wrong type", J("guest-exec", { path: "true", arg: ["a", 1] }), {
    expect: ["'arg[1]', expected: string"],
  }),
  one(
    "b/seek whence null",
    '{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0,"whence":null}}',
    { expect: ["expected: GuestFileWhence"] },
  ),
  one(
    "b/seek whence foo",
    '{"execute":"guest-file-seek","arguments":{"handle":1000,"offset":0,"whence":"foo"}}',
    { expect: ["does not accept value 'foo'"] },
  ),
  one("b/open mode rw", J("guest-file-open", { path: "hello", mode: "rw" }), {
    expect: ["invalid file open mode 'rw'"],
  }),
  one("b/fsfreeze-status", '{"execute":"guest-fsfreeze-status"}', {
    expect: ['{"return": "thawed"}'],
  }),
  {
    name: "b/started frozen: status, disabled get-time, thaw, status, get-time",
    instance: "fresh",
    start: { files: { "qga.state.isfrozen": "" } },
    steps: [
      w(J("guest-fsfreeze-status")),
      w(J("guest-get-time")),
      w(J("guest-file-open", { path: "foo", mode: "w" })),
      w(J("guest-info", { bad: 1 })),
      mark(),
      { op: "files" },
      w(J("guest-fsfreeze-thaw")),
      w(J("guest-fsfreeze-status")),
      w(J("guest-get-time")),
      mark(),
      { op: "files" },
    ],
    masks: ["time"],
    expect: ["frozen", "has been disabled", '{"return": "thawed"}', "<ns-time>"],
  },
  {
    // Freezing disables only what is still enabled: a blocked command keeps its text.
    name: "b/started frozen with a block list: blocked, frozen and freeze-safe commands",
    instance: "fresh",
    start: {
      files: { "qga.state.isfrozen": "" },
      block: ["guest-get-host-name", "guest-ping"],
    },
    steps: [
      w(J("guest-get-host-name")),
      w(J("guest-shutdown")),
      w(J("guest-get-timezone")),
      w(J("guest-ping")),
      w(J("guest-fsfreeze-status")),
      mark(),
      w(J("guest-fsfreeze-thaw")),
      w(J("guest-get-host-name")),
      w(J("guest-ping")),
      mark(),
    ],
    expect: [
      '"Command guest-get-host-name has been disabled"',
      '"Command guest-shutdown has been disabled"',
      '"Command guest-get-timezone has been disabled: the agent is in frozen state"',
      '"Command guest-ping has been disabled"',
    ],
  },
];

// ---------------------------------------------------------------------------------------
// tests/unit/test-qga.c (read-only ones, and file ops in the temp dir)

const HELLO14 = "Hello World!\n\0";

const testQga: Entry[] = [
  one(
    "qga/sync-delimited with raw 0xFF prefix",
    cat(raw("\xff"), J("guest-sync-delimited", { id: RANDOM_ID }), "\n"),
    { expect: [`\\xff{"return": ${RANDOM_ID}}`] },
  ),
  one("qga/sync", J("guest-sync", { id: RANDOM_ID2 }) + "\n", {
    expect: [`{"return": ${RANDOM_ID2}}`],
  }),
  one("qga/ping", J("guest-ping") + "\n", { expect: ['{"return": {}}'] }),
  one("qga/info", J("guest-info") + "\n", { compare: "guest-info", expect: ['"version": '] }),
  one("qga/get-time", J("guest-get-time") + "\n", { masks: ["time"], expect: ["<ns-time>"] }),
  one("qga/id", J("guest-ping", undefined, 1) + "\n", { expect: ['"id": 1'] }),
  one("qga/invalid-oob", '{"exec-oob": "guest-ping"}\n', { expect: ["GenericError"] }),
  one("qga/invalid-cmd", J("guest-invalid-cmd") + "\n", { expect: [NOT_FOUND] }),
  one("qga/invalid-args", J("guest-ping", { foo: 42 }) + "\n", {
    expect: ["Parameter 'foo' is unexpected"],
  }),
  one("qga/fsfreeze-status", J("guest-fsfreeze-status") + "\n", { expect: ["thawed"] }),
  {
    name: "qga/file-ops",
    instance: "fresh",
    steps: [
      w(J("guest-file-open", { path: "foo", mode: "w+" })),
      mark("h"),
      w((v) => J("guest-file-write", { handle: H(v), "buf-b64": b64(HELLO14) })),
      w((v) => J("guest-file-flush", { handle: H(v) })),
      w((v) => J("guest-file-close", { handle: H(v) })),
      mark(),
      { op: "files" },
      w(J("guest-file-open", { path: "foo", mode: "r" })),
      mark("h"),
      w((v) => J("guest-file-read", { handle: H(v) })),
      w((v) => J("guest-file-read", { handle: H(v) })),
      w((v) => J("guest-file-seek", { handle: H(v), offset: 6, whence: "set" })),
      w((v) => J("guest-file-read", { handle: H(v) })),
      w((v) => J("guest-file-close", { handle: H(v) })),
      mark(),
      { op: "files" },
    ],
    expect: ['"count": 14', '"position": 6', '"count": 8'],
  },
  {
    name: "qga/file-write-read",
    instance: "fresh",
    steps: [
      w(J("guest-file-open", { path: "foo", mode: "w+" })),
      mark("h"),
      w((v) => J("guest-file-write", { handle: H(v), "buf-b64": b64(HELLO14) })),
      w((v) => J("guest-file-read", { handle: H(v) })),
      w((v) => J("guest-file-seek", { handle: H(v), offset: 0, whence: "set" })),
      w((v) => J("guest-file-read", { handle: H(v) })),
      w((v) => J("guest-file-close", { handle: H(v) })),
      mark(),
      { op: "files" },
    ],
    expect: ['"count": 0, "buf-b64": "", "eof": true', '"position": 0'],
  },
  {
    name: "qga/blockedrpcs",
    instance: "fresh",
    start: { block: ["guest-ping", "guest-get-time"] },
    steps: [
      w(J("guest-ping")),
      w(J("guest-get-time")),
      w(J("guest-ping", { foo: 1 }, "x")),
      w(J("guest-get-host-name")),
      mark(),
    ],
    expect: ["has been disabled", '"host-name"'],
  },
  {
    name: "qga/blockedrpcs guest-info shows enabled false",
    instance: "fresh",
    start: { block: ["guest-ping", "guest-get-time", "guest-no-such-command"] },
    steps: [w(J("guest-info")), mark()],
    compare: "guest-info",
    expect: ['{"enabled": false, "name": "guest-ping"'],
  },
  {
    name: "qga/guest-get-osinfo with QGA_OS_RELEASE",
    instance: "fresh",
    start: {
      env: { QGA_OS_RELEASE: "os-release" },
      files: {
        "os-release": [
          "ID=qemu-ga-test",
          "NAME=QEMU-GA",
          'PRETTY_NAME="QEMU Guest Agent test"',
          'VERSION="Test 1"',
          "VERSION_ID=1",
          'VARIANT="Unit test \\"\\\'\\$\\`\\\\ and \\\\\\\\ etc."',
          "VARIANT_ID=unit-test",
          "",
        ].join("\n"),
      },
    },
    steps: [w(J("guest-get-osinfo")), mark()],
    expect: ['"id": "qemu-ga-test"', '"variant-id": "unit-test"'],
  },
  one("qga/guest-get-host-name", J("guest-get-host-name") + "\n", { expect: ['"host-name"'] }),
  one("qga/guest-get-timezone", J("guest-get-timezone") + "\n", { expect: ['"offset"'] }),
  one("qga/guest-get-users", J("guest-get-users") + "\n", { expect: ['{"return": ['] }),
  one("qga/guest-get-osinfo", J("guest-get-osinfo") + "\n", { expect: ['"kernel-release"'] }),
  one("qga/get-vcpus", J("guest-get-vcpus") + "\n", { expect: ['"logical-id"'] }),
  one("qga/get-memory-block-info", J("guest-get-memory-block-info") + "\n"),
  one("qga/get-memory-blocks", J("guest-get-memory-blocks") + "\n"),
  one("qga/network-get-interfaces", J("guest-network-get-interfaces") + "\n", {
    masks: ["if-stats"],
    expect: ['"name": "lo"'],
  }),
  one("qga/get-fsinfo", J("guest-get-fsinfo") + "\n", { masks: ["fs-used"] }),
  {
    name: "qga/guest-exec echo and status",
    instance: "shared",
    steps: [
      w(J("guest-exec", { path: "echo", arg: ["-n", '" test_str "'], "capture-output": true })),
      mark("pid"),
      { op: "pause", ms: 500 },
      w((v) => J("guest-exec-status", { pid: H(v, "pid") })),
      mark(),
    ],
    masks: ["pid"],
    expect: ['"exitcode": 0', '"out-data": "IiB0ZXN0X3N0ciAi"'],
  },
  {
    // deno-qga's sandbox grants /bin/invalid-cmd42 (tests/helpers/agents.ts EXEC_PROGRAMS),
    // so both agents try to spawn it and report the same spawn failure.
    name: "qga/guest-exec-invalid",
    instance: "shared",
    steps: [
      w(J("guest-exec", { path: "/bin/invalid-cmd42" })),
      w(J("guest-exec-status", { pid: 0 })),
      mark(),
    ],
    expect: [
      "Failed to execute child process \\\\u201C/bin/invalid-cmd42\\\\u201D " +
      "(No such file or directory)",
    ],
  },
  {
    // A program that exists but --exec-programs does not list is refused by deno-qga before
    // any spawn; qemu-ga, which runs anything, starts it. Only that reply may differ.
    name: "exec/a program outside --exec-programs is refused before it is spawned",
    instance: "shared",
    steps: [
      w(J("guest-exec", { path: "/usr/bin/false", "capture-output": true })),
      w(J("guest-exec-status", { pid: 0 })),
      mark(),
    ],
    expect: ['{"return": {"pid": '],
    known: [{
      segment: 0,
      reply: 0,
      deno: '{"error": {"class": "GenericError", "desc": "guest-exec: program ' +
        "'/usr/bin/false' is not allowed: it is not listed in the agent's --exec-programs " +
        '(exec-programs= in the configuration)"}}\\n',
      reason: "least privilege: a program not named with --exec-programs is refused before " +
        "it is spawned (docs/commands.md, guest-exec)",
    }],
  },
];
// ---------------------------------------------------------------------------------------
// §1.2 lexer and parser

const json: Entry[] = [
  // strings and escapes
  one("json/escapes echoed through id", echoId(String.raw`"\" \' \\ \/ \b \f \n \r \t"`), {
    expect: [String.raw`\\" ' \\\\ / \\b \\f \\n \\r \\t`],
  }),
  one(
    "json/single-quoted string containing a double quote",
    "{'execute':'guest-ping','id':'a\"b'}",
  ),
  one(
    "json/escaped single quote in single-quoted string",
    "{'execute':'guest-ping','id':'it\\'s'}",
  ),
  one("json/\\u0000 in a string", echoId(String.raw`"a\u0000b"`), { expect: ["\\\\u0000"] }),
  one("json/surrogate pair", echoId(String.raw`"\ud83d\ude00"`), {
    expect: ["\\\\uD83D\\\\uDE00"],
  }),
  one("json/lone high surrogate", echoId(String.raw`"\ud800"`)),
  one("json/lone low surrogate", echoId(String.raw`"\udc00x"`)),
  one("json/high surrogate followed by non-surrogate", echoId(String.raw`"\ud800\u0041"`)),
  one("json/truncated \\u escape before quote", echoId(String.raw`"\u0041\u00"`), {
    expect: ["is not a valid Unicode character"],
  }),
  one("json/\\u with non-hex digit", echoId(String.raw`"\u00g0"`)),
  one("json/invalid escape \\x41", echoId(String.raw`"\x41"`), { expect: ["invalid escape"] }),
  one("json/lower and upper case hex escapes", echoId(String.raw`"\u00e9\u00E9\u007f\u0080"`)),
  one("json/raw UTF-8 and DEL echoed as \\u escapes", echoId('"é😀~\x7f"'), {
    expect: ["\\\\u00E9\\\\uD83D\\\\uDE00~\\\\u007F"],
  }),
  one("json/slash is not escaped on output", echoId('"a/b"')),
  one("json/invalid UTF-8: lone lead byte", echoId(raw('"a\xc3"'))),
  one("json/invalid UTF-8: lone continuation byte", echoId(raw('"a\x80b"'))),
  one("json/invalid UTF-8: bad continuation", echoId(raw('"\xc3\x28"'))),
  one("json/invalid UTF-8: above U+10FFFF", echoId(raw('"\xf4\x90\x80\x80"'))),
  one("json/invalid UTF-8: encoded surrogate", echoId(raw('"\xed\xa0\x80"'))),
  one("json/invalid UTF-8: five-byte form", echoId(raw('"\xf8\x88\x80\x80\x80"'))),
  one("json/overlong C0 80 in a string", echoId(raw('"a\xc0\x80b"'))),
  one("json/overlong C1 BF in a string", echoId(raw('"\xc1\xbf"'))),
  one("json/overlong E0 80 80 in a string", echoId(raw('"\xe0\x80\x80"'))),
  one("json/0xFE inside a string", echoId(raw('"a\xfeb"'))),
  one("json/noncharacter U+FFFF as escape", echoId(String.raw`"\uffff"`)),
  one("json/noncharacter U+FDD0 as escape", echoId(String.raw`"\ufdd0"`)),
  one("json/noncharacter U+FFFF as raw UTF-8", echoId(raw('"\xef\xbf\xbf"'))),
  one("json/noncharacter U+FDD0 as raw UTF-8", echoId(raw('"\xef\xb7\x90"'))),
  one("json/non-BMP noncharacter U+10FFFF as raw UTF-8", echoId(raw('"\xf4\x8f\xbf\xbf"'))),
  one("json/control byte 0x01 in a string", echoId(raw('"a\x01b"'))),
  one("json/control byte 0x1F in a string", echoId(raw('"a\x1fb"'))),
  one("json/LF in a string", echoId('"a\nb"')),
  one("json/CR in a string", echoId('"a\rb"')),
  one("json/NUL in a string", echoId(raw('"a\x00b"'))),
  // keywords
  one("json/keyword foo", "foo ", { expect: ["invalid keyword 'foo'"] }),
  one("json/keyword nul", "nul ", { expect: ["invalid keyword 'nul'"] }),
  one("json/keyword as id value", '{"execute":"guest-ping","id":nul}'),
  one("json/upper-case keyword True", "True "),
  one("json/keyword false as id", '{"execute":"guest-ping","id":false}'),
  // numbers
  ...[
    "01",
    "-",
    "1.",
    "1e",
    "-0",
    "1e400",
    "-1e400",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "0.1",
    "1.5",
    "-1.0e-3",
    "1E2",
    "1e+2",
    "-0.0",
    "5e-324",
    "1.7976931348623157e308",
    "123456789012345678901234567890",
    ".5",
    "+1",
    "0x10",
    "1.5e",
  ].map((n) => one(`json/number ${n} as id`, echoId(n))),
  one("json/number at top level then a request", '42{"execute":"guest-ping"}'),
  one("json/negative zero as sync id", '{"execute":"guest-sync","arguments":{"id":-0}}', {
    expect: ['{"return": 0}'],
  }),
  one(
    "json/int64 min as sync id",
    '{"execute":"guest-sync","arguments":{"id":-9223372036854775808}}',
    {
      expect: ['{"return": -9223372036854775808}'],
    },
  ),
  one(
    "json/uint64 max as sync id",
    '{"execute":"guest-sync","arguments":{"id":18446744073709551615}}',
  ),
  // structure
  one("json/nesting 1024 arrays", "[".repeat(1024) + "]".repeat(1024), {
    expect: ["must be a JSON object"],
  }),
  one("json/nesting 1025 arrays", "[".repeat(1025) + "]".repeat(1025), {
    expect: ["nesting depth limit exceeded"],
  }),
  one("json/nesting 1024 objects", '{"a":'.repeat(1024) + "1" + "}".repeat(1024)),
  one("json/nesting 1025 objects", '{"a":'.repeat(1025) + "1" + "}".repeat(1025), {
    expect: ["nesting depth limit exceeded"],
  }),
  one(
    "json/arguments nested 1023 deep are accepted",
    '{"execute":"guest-ping","arguments":{"x":' + '{"a":'.repeat(1021) + "1" + "}".repeat(1021) +
      "}}",
    { expect: ["Parameter 'x' is unexpected"] },
  ),
  one(
    "json/id nested 1023 arrays",
    '{"execute":"guest-ping","id":' + "[".repeat(1023) + "]".repeat(1023) + "}",
  ),
  one("json/stray closing brace", "}", { expect: ["expecting value"] }),
  one("json/stray closing bracket", "]", { expect: ["expecting value"] }),
  one("json/stray colon and comma", ": ,"),
  one("json/trailing comma in object", '{"execute":"guest-ping",}', {
    expect: ["expecting value"],
  }),
  one("json/trailing comma in array id", '{"execute":"guest-ping","id":[1,]}'),
  one("json/duplicate key", '{"execute":"guest-ping","execute":"guest-sync"}', {
    expect: ["duplicate key"],
  }),
  one("json/missing colon", '{"execute" "guest-ping"}', { expect: ["missing : in object pair"] }),
  one("json/number as key", "{1:2}", { expect: ["key is not a string"] }),
  one("json/null as key", '{null:"guest-ping"}'),
  one("json/missing separator in dict", '{"execute":"guest-ping" "id":1}'),
  one("json/missing separator in list", '{"execute":"guest-ping","id":[1 2]}', {
    expect: ["expected separator in list"],
  }),
  one("json/missing value after colon", '{"execute":}'),
  one(
    "json/empty array id and empty object id",
    '{"execute":"guest-ping","id":[]}{"execute":"guest-ping","id":{}}',
  ),
  // streams
  one(
    "json/several requests in one write",
    '{"execute":"guest-ping"}{"execute":"guest-sync","arguments":{"id":1}}\n\n  {"execute":"guest-ping","id":3}',
    { expect: ['{"return": 1}', '"id": 3'] },
  ),
  one(
    "json/whitespace of every kind between tokens",
    ' \t\r\n{ \t\r\n"execute" \r\n: \t"guest-ping"\r\n}\r\n',
  ),
  {
    name: "json/split sync request in four writes",
    instance: "shared",
    steps: [
      w('{"exec'),
      { op: "pause", ms: 30 },
      w('ute":"guest-sync","arguments":{"id":'),
      { op: "pause", ms: 30 },
      w("99"),
      { op: "pause", ms: 30 },
      idle(undefined, 150),
      w("}}"),
      mark(),
    ],
    expect: ['{"return": 99}'],
  },
  ...[
    '{"execute":"guest-sync-delimited","arguments":{"id":4242},"id":"x"}',
    "{'execute':'guest-ping','id':[1,{\"k\":'v'}]}",
    '{"execute":"guest-ping","id":"a\\u00e9\\"b"}',
  ].map((req, i): Entry => ({
    name: `json/request ${i + 1} sent one byte per write`,
    instance: "shared",
    steps: [{ op: "bytewise", data: req, pauseMs: 1 }, mark()],
  })),
  quiet("json/0xFF in the middle of a string", cat('{"execute":"guest-pi', raw("\xff")), {
    expect: ["stray '\\\\\"guest-pi\\\\uFFFD'"],
  }),
  one(
    "json/0xFF in the middle of a string, then a request",
    cat('{"execute":"guest-pi', raw("\xff"), '{"execute":"guest-ping"}'),
  ),
  one(
    "json/0xFF right after a number",
    cat('{"execute":"guest-sync","arguments":{"id":5', raw("\xff")),
  ),
  one("json/0xFF at the start of a request", cat(raw("\xff"), '{"execute":"guest-ping"}')),
  one("json/several 0xFF bytes", cat(raw("\xff\xff\xff"), '{"execute":"guest-ping"}')),
  one(
    "json/0xFF between requests",
    cat('{"execute":"guest-ping"}', raw("\xff"), '{"execute":"guest-ping","id":2}'),
  ),
  one("json/control byte 0x01 outside a string", raw("\x01")),
  one("json/control byte 0x1B in the middle of an object", raw('{"execute":\x1b"guest-ping"}')),
  one(
    "json/NUL between requests",
    raw('{"execute":"guest-ping"}\x00{"execute":"guest-ping","id":1}'),
  ),
  one("json/byte 0x80 outside a string", raw("\x80")),
  one("json/recovery after garbage", '{"execute":guest-ping}{"execute":"guest-ping"}', {
    expect: ["stray '-p'", '{"return": {}}'],
  }),
  one(
    "json/garbage then closing brace then sync (libvirt W6)",
    'garbage}\n{"execute":"guest-sync","arguments":{"id":1732700000123}}',
  ),
  quiet("json/unterminated string waits for more input", '{"execute":"guest-ping","id":"abc'),
  quiet("json/top-level number without look-ahead waits", "42"),
  quiet("json/open object waits for more input", '{"execute":"guest-ping"'),
  {
    name: "json/string continued in a second write",
    instance: "shared",
    steps: [w('{"execute":"guest-ping","id":"ab'), { op: "pause", ms: 30 }, w('c"}'), mark()],
    expect: ['"id": "abc"'],
  },
];

// ---------------------------------------------------------------------------------------
// §1.3 request form

const ids: [string, string][] = [
  ["int", "7"],
  ["negative int", "-7"],
  ["double", "2.5"],
  ["string", '"x"'],
  ["true", "true"],
  ["false", "false"],
  ["null", "null"],
  ["array", '[1,"a",null]'],
  ["empty object", "{}"],
  ["object with several keys", '{"b":1,"a":2,"c":3,"id":4,"return":5,"error":6}'],
  ["nested objects", '{"z":{"y":{"x":[{"k2":1,"k1":2}]}},"a":{"execute":"guest-ping"}}'],
  [
    "object with keys of many buckets",
    '{"zz":1,"aa":2,"m":3,"desc":4,"class":5,"name":6,"enabled":7}',
  ],
];

const request: Entry[] = [
  ...ids.map(([what, v]) => one(`req/id of type ${what}`, echoId(v))),
  ...ids.slice(0, 4).map(([what, v]) =>
    one(`req/id of type ${what} on an error reply`, `{"execute":"guest-nope","id":${v}}`)
  ),
  one("req/id before execute", '{"id":1,"execute":"guest-ping"}'),
  one("req/members in reverse order", '{"id":"x","arguments":{"id":5},"execute":"guest-sync"}'),
  one("req/arguments before execute", '{"arguments":{},"execute":"guest-ping"}'),
  one("req/several unexpected members", '{"execute":"guest-ping","zz":1,"aa":2,"foo":3,"bar":4}'),
  one(
    "req/several unexpected members and bad execute",
    '{"execute":1,"zz":1,"aa":2,"arguments":[]}',
  ),
  one("req/exec-oob next to execute", '{"execute":"guest-ping","exec-oob":"guest-ping"}'),
  one("req/exec-oob with id", '{"exec-oob":"guest-ping","id":9}'),
  ...["null", "[]", '"x"', "1", "true"].map((v) =>
    one(`req/arguments ${v}`, `{"execute":"guest-ping","arguments":${v}}`)
  ),
  ...["null", "1", "{}", "[]", "true", '""'].map((v) =>
    one(`req/execute ${v}`, `{"execute":${v},"id":1}`)
  ),
  one("req/only arguments", '{"arguments":{}}', { expect: ["lacks member 'execute'"] }),
  one("req/only id", '{"id":1}'),
  one("req/execute upper case", '{"execute":"GUEST-PING"}', { expect: [NOT_FOUND] }),
  one("req/execute with trailing space", '{"execute":"guest-ping "}'),
  one("req/execute with non-ASCII name", '{"execute":"guest-pïng"}'),
  one("req/arguments empty object", '{"execute":"guest-ping","arguments":{}}'),
  one(
    "req/get-devices is disabled on Linux (7.2) or absent (10.x)",
    '{"execute":"guest-get-devices"}',
  ),
  ...DANGEROUS_COMMANDS.map((c) =>
    // The arguments are invalid for every one of these commands, so even an agent that
    // ignored -b could not run the handler.
    one(`req/blocked ${c} is disabled`, J(c, { "bogus-argument": [] }, "blocked"), {
      expect: ["has been disabled"],
    })
  ),
];

// ---------------------------------------------------------------------------------------
// §1.6 argument validation (unknown handles only: the shared agents never open a file)

const badValues: [string, string][] = [
  ["string", '"1"'],
  ["float", "1.5"],
  ["bool", "true"],
  ["null", "null"],
  ["array", "[]"],
  ["object", "{}"],
];

function args(name: string, cmd: string, a: string, extra: Extra = {}): Entry {
  return one(`args/${cmd} ${name}`, `{"execute":"${cmd}","arguments":${a}}`, extra);
}

const argsEntries: Entry[] = [
  ...badValues.map(([what, v]) => args(`id ${what}`, "guest-sync-delimited", `{"id":${v}}`)),
  args("id missing", "guest-sync-delimited", "{}"),
  args("id with unexpected key", "guest-sync-delimited", '{"id":1,"foo":2}'),
  args("bad id and unexpected key", "guest-sync", '{"id":"x","foo":2}', {
    expect: ["expected: integer"],
  }),
  args("several unexpected keys", "guest-sync", '{"id":1,"b":1,"a":2,"zzz":3,"execute":4}'),
  args("several unexpected keys", "guest-ping", '{"foo":42,"bar":1,"baz":null}'),
  args("path missing", "guest-file-open", "{}"),
  args("path missing, mode given", "guest-file-open", '{"mode":"r"}'),
  ...badValues.map(([what, v]) => args(`path ${what}`, "guest-file-open", `{"path":${v}}`)),
  ...badValues.map(([what, v]) =>
    args(`mode ${what}`, "guest-file-open", `{"path":"nonexistent","mode":${v}}`)
  ),
  args("bad path and bad mode", "guest-file-open", '{"mode":1,"path":2}'),
  args("unexpected key", "guest-file-open", '{"path":"nonexistent","mode":"r","x":1}'),
  args(
    "several unexpected keys",
    "guest-file-open",
    '{"path":"nonexistent","zz":1,"aa":2,"flags":3}',
  ),
  ...badValues.map(([what, v]) => args(`handle ${what}`, "guest-file-close", `{"handle":${v}}`)),
  args("handle missing", "guest-file-close", "{}"),
  args("unknown handle", "guest-file-close", '{"handle":1000}', { expect: ["has not been found"] }),
  args("negative handle", "guest-file-close", '{"handle":-1}'),
  args("handle int64 max", "guest-file-close", '{"handle":9223372036854775807}'),
  args("unknown handle with unexpected key", "guest-file-close", '{"handle":1000,"x":1}'),
  ...badValues.map(([what, v]) =>
    args(`count ${what}`, "guest-file-read", `{"handle":1000,"count":${v}}`)
  ),
  args("handle missing", "guest-file-read", '{"count":1}'),
  args("unknown handle, negative count", "guest-file-read", '{"handle":1000,"count":-1}'),
  args("unknown handle, count too large", "guest-file-read", '{"handle":1000,"count":50331649}'),
  args("buf-b64 missing", "guest-file-write", '{"handle":1000}'),
  args("handle missing", "guest-file-write", '{"buf-b64":""}'),
  ...badValues.map(([what, v]) =>
    args(`buf-b64 ${what}`, "guest-file-write", `{"handle":1000,"buf-b64":${v}}`)
  ),
  args("count string", "guest-file-write", '{"handle":1000,"buf-b64":"","count":"1"}'),
  args("unknown handle, invalid base64", "guest-file-write", '{"handle":1000,"buf-b64":"!!!"}'),
  args("all missing", "guest-file-seek", "{}"),
  args("handle missing, others bad", "guest-file-seek", '{"whence":null,"offset":"x"}'),
  args("offset missing", "guest-file-seek", '{"handle":1000,"whence":0}'),
  args("whence missing", "guest-file-seek", '{"handle":1000,"offset":0}'),
  ...badValues.map(([what, v]) =>
    args(`offset ${what}`, "guest-file-seek", `{"handle":1000,"offset":${v},"whence":0}`)
  ),
  ...[
    ...badValues,
    ["int 3", "3"],
    ["negative int", "-1"],
    ["string foo", '"foo"'],
    [
      "string SET",
      '"SET"',
    ],
    ["int64 overflow", "9223372036854775808"],
    ["false", "false"],
  ].map(([what, v]) =>
    args(`whence ${what}`, "guest-file-seek", `{"handle":1000,"offset":0,"whence":${v}}`)
  ),
  args("unexpected key", "guest-file-seek", '{"handle":1000,"offset":0,"whence":0,"x":1}'),
  ...badValues.slice(0, 4).map(([what, v]) =>
    args(`handle ${what}`, "guest-file-flush", `{"handle":${v}}`)
  ),
  args("unknown handle", "guest-file-flush", '{"handle":1000}'),
  args("pid missing", "guest-exec-status", "{}"),
  args("pid string", "guest-exec-status", '{"pid":"1"}'),
  args("path missing", "guest-exec", '{"arg":[]}'),
  args("arg not an array", "guest-exec", '{"path":"true","arg":"x"}'),
  args("env element null", "guest-exec", '{"path":"true","env":[null]}'),
  args(
    "capture-output string (7.2 bool, 10.x enum)",
    "guest-exec",
    '{"path":"true","capture-output":"bogus"}',
  ),
  args("input-data invalid base64", "guest-exec", '{"path":"/nonexistent/x","input-data":"!"}'),
  args("username missing", "guest-ssh-get-authorized-keys", "{}"),
];

// ---------------------------------------------------------------------------------------
// §2.3 Files, §3.3-3.5 (fresh pair each: handles and the state file are compared too)

const CONTENT = "0123456789abcdef\n";

const SEEK_PAST_MAX = "positions are tracked by deno-qga (node:fs has no lseek): a seek " +
  "past the filesystem's maximum file size is accepted instead of failing with EINVAL";

function fileEntry(name: string, steps: Step[], extra: Extra = {}): Entry {
  return {
    name: `file/${name}`,
    instance: "fresh",
    start: { files: { existing: CONTENT } },
    steps: [...steps, mark(), { op: "files" }],
    ...extra,
  };
}

function open(path: string, mode?: string): Step {
  return w(J("guest-file-open", mode === undefined ? { path } : { path, mode }));
}

const op = {
  read: (count?: number | string) =>
    w((v) =>
      count === undefined
        ? J("guest-file-read", { handle: H(v) })
        : `{"execute":"guest-file-read","arguments":{"handle":${H(v)},"count":${count}}}`
    ),
  write: (buf: string, count?: number) =>
    w((v) =>
      J(
        "guest-file-write",
        count === undefined
          ? { handle: H(v), "buf-b64": buf }
          : { handle: H(v), "buf-b64": buf, count },
      )
    ),
  seek: (offset: number | string, whence: string) =>
    w((v) =>
      `{"execute":"guest-file-seek","arguments":{"handle":${
        H(v)
      },"offset":${offset},"whence":${whence}}}`
    ),
  flush: () => w((v) => J("guest-file-flush", { handle: H(v) })),
  close: () => w((v) => J("guest-file-close", { handle: H(v) })),
};

const VALID_MODES = [
  "r",
  "rb",
  "w",
  "wb",
  "a",
  "ab",
  "r+",
  "rb+",
  "r+b",
  "w+",
  "wb+",
  "w+b",
  "a+",
  "ab+",
  "a+b",
];

const files: Entry[] = [
  ...VALID_MODES.map((mode) =>
    fileEntry(`mode ${mode} on an existing file: write, read, seek, read`, [
      open("existing", mode),
      mark("h"),
      op.write(b64("XY")),
      op.read(),
      op.seek(0, '"set"'),
      op.read(),
      op.close(),
    ])
  ),
  ...["w", "a", "w+", "a+", "r+"].map((mode) =>
    fileEntry(`mode ${mode} on a new file`, [
      open("new", mode),
      mark("h"),
      op.write(b64("new content")),
      op.close(),
    ])
  ),
  ...["x", "rw", "rt", "r+t", "wx", "", "R", "rb+x", "+r"].map((mode) =>
    fileEntry(`invalid mode ${JSON.stringify(mode)}`, [open("existing", mode)], {
      expect: ["invalid file open mode"],
    })
  ),
  fileEntry("invalid mode on a nonexistent path", [open("nonexistent", "x")]),
  fileEntry("nonexistent path", [open("nonexistent")], { expect: ["No such file or directory"] }),
  fileEntry("nonexistent directory in path", [open("no/such/dir", "w")]),
  fileEntry("non-ASCII path in the error text", [open("nonexisté")]),
  fileEntry("directory opens, reading it fails", [
    open("."),
    mark("h"),
    op.read(),
    op.close(),
  ], { expect: ["Is a directory"] }),
  fileEntry("directory opened for writing", [open(".", "w")]),
  ...[0, 1, 4096, -1, 50331648, 50331649].map((count) =>
    fileEntry(`read count ${count}`, [
      open("existing"),
      mark("h"),
      op.read(count),
      op.read(count),
      op.close(),
    ])
  ),
  fileEntry("read exactly the remaining size, then again", [
    open("existing"),
    mark("h"),
    op.read(CONTENT.length),
    op.read(CONTENT.length),
    op.read(),
    op.close(),
  ]),
  fileEntry("read on a write-only handle", [
    open("existing", "a"),
    mark("h"),
    op.read(),
    op.close(),
  ]),
  fileEntry("write on a read-only handle", [
    open("existing", "r"),
    mark("h"),
    op.write(b64("zz")),
    op.close(),
  ]),
  ...[
    ["SGVsbG8", "missing padding"],
    ["SGVsbG8=", "one pad"],
    ["SGVsbG8==", "extra pad"],
    ["SGVs\nbG8=", "newline inside"],
    ["S", "one char"],
    ["SG", "two chars"],
    ["SGV", "three chars"],
    ["", "empty"],
    ["SGVsbA=", "short quartet with pad"],
    ["=SGV", "leading pad"],
    ["====", "only pads"],
    ["SGVsbG8=SGVs", "pad in the middle"],
    ["!!!", "invalid characters"],
    ["SGVs bG8=", "space"],
    ["SGVs\r\nbG8=", "CRLF"],
    ["-_-_", "base64url alphabet"],
    ["SGVsbG8=\n", "trailing newline"],
    [
      b64("x".repeat(200)).replace(/(.{76})/g, "$1\n"),
      "newline every 76 chars (Proxmox)",
    ],
  ].map(([buf, what]) =>
    fileEntry(`write base64 ${what}`, [
      open("new", "w+"),
      mark("h"),
      op.write(buf!),
      op.seek(0, '"set"'),
      op.read(),
      op.close(),
    ])
  ),
  ...[0, 3, 5, 6, -1].map((count) =>
    fileEntry(`write count ${count} of 5 decoded bytes`, [
      open("new", "w+"),
      mark("h"),
      op.write(b64("Hello"), count),
      op.close(),
    ])
  ),
  ...[
    "0",
    "1",
    "2",
    '"set"',
    '"cur"',
    '"end"',
    "3",
    '"foo"',
    "1.5",
    "null",
    "true",
    "[]",
    "{}",
    "-1",
  ].map(
    (whence) =>
      fileEntry(`seek offset 4 whence ${whence}`, [
        open("existing", "r"),
        mark("h"),
        op.read(2),
        op.seek(4, whence),
        op.read(3),
        op.close(),
      ]),
  ),
  fileEntry("seek past the end, then write and read back", [
    open("existing", "r+"),
    mark("h"),
    op.seek(100, '"set"'),
    op.write(b64("END")),
    op.seek(-5, '"end"'),
    op.read(),
    op.close(),
  ]),
  fileEntry("seek to a negative position", [
    open("existing", "r"),
    mark("h"),
    op.seek(-1, '"set"'),
    op.seek(-100, '"cur"'),
    op.seek(-100, '"end"'),
    op.read(4),
    op.close(),
  ]),
  fileEntry("seek with huge offset", [
    open("existing", "r"),
    mark("h"),
    op.seek("9223372036854775807", '"set"'),
    mark(),
    op.seek(1, '"cur"'),
    mark(),
    op.close(),
  ], {
    known: [
      {
        segment: 1,
        reply: 0,
        deno: '{"return": {"eof": false, "position": 9223372036854775807}}\\n',
        reason: SEEK_PAST_MAX,
      },
      {
        // The failed seek left qemu-ga at 0, so it answers 1; deno-qga is at 2^63 - 1.
        segment: 2,
        reply: 0,
        deno: '{"error": {"class": "GenericError", "desc": "failed to seek file: Invalid ' +
          'argument"}}\\n',
        reason: SEEK_PAST_MAX,
      },
    ],
  }),
  fileEntry("read after write without seek", [
    open("existing", "r+"),
    mark("h"),
    op.write(b64("AB")),
    op.read(5),
    op.close(),
  ]),
  fileEntry("write after read without seek", [
    open("existing", "r+"),
    mark("h"),
    op.read(3),
    op.write(b64("ZZ")),
    op.read(3),
    op.close(),
  ]),
  fileEntry("append mode writes at the end after a seek", [
    open("existing", "a+"),
    mark("h"),
    op.seek(0, '"set"'),
    op.read(4),
    op.write(b64("tail")),
    op.seek(0, '"set"'),
    op.read(),
    op.close(),
  ]),
  fileEntry("flush makes a write visible on disk", [
    open("new", "w"),
    mark("h"),
    op.write(b64("buffered")),
    mark(),
    { op: "files" },
    op.flush(),
    mark(),
    { op: "files" },
    op.close(),
  ], {
    known: [{
      // The first snapshot, before guest-file-flush: qemu-ga's `new` is still empty.
      segment: 2,
      reply: 0,
      deno: "existing(644)=<0123456789abcdef\\n>;new(666)=<buffered>;" +
        "qga.state(644)=<[global]\\nfd_counter=1001\\n>;",
      reason: "deno-qga writes through at once instead of holding data in a stdio buffer " +
        "until flush; what the client reads back is the same",
    }],
  }),
  fileEntry("close twice, then every command on the closed handle", [
    open("existing"),
    mark("h"),
    op.close(),
    op.close(),
    op.read(),
    op.write(""),
    op.seek(0, "0"),
    op.flush(),
  ], { expect: ["has not been found"] }),
  fileEntry("w truncates an existing file", [open("existing", "w"), mark("h"), op.close()]),
  fileEntry("handles count up across opens and closes", [
    open("existing"),
    open("existing", "a"),
    open("new", "w"),
    mark(),
    { op: "files" },
    w(J("guest-file-close", { handle: 1001 })),
    open("existing"),
    mark(),
    { op: "files" },
  ], { expect: ["fd_counter=1004"] }),
  fileEntry("failed opens do not use up a handle", [
    open("nonexistent"),
    open("existing", "bad"),
    open("existing"),
    mark(),
  ]),
  {
    name: "file/handle counter continues from an existing state file",
    instance: "fresh",
    start: { files: { "qga.state": "[global]\nfd_counter=5000\n", existing: CONTENT } },
    steps: [{ op: "files" }, open("existing"), open("existing"), mark(), { op: "files" }],
    expect: ['{"return": 5000}'],
  },
  {
    name: "file/state file with a comment and other keys",
    instance: "fresh",
    start: {
      files: { "qga.state": "# comment\n[global]\nother=1\nfd_counter=77\n", existing: CONTENT },
    },
    steps: [{ op: "files" }, open("existing"), mark(), { op: "files" }],
  },
  {
    name: "file/many writes then read the whole file",
    instance: "fresh",
    steps: [
      open("big", "w+"),
      mark("h"),
      ...Array.from({ length: 8 }, (_, i) => op.write(b64(String(i).repeat(1000)))),
      op.seek(0, '"set"'),
      op.read(5000),
      op.read(),
      op.close(),
      mark(),
      { op: "files" },
    ],
  },
];

// ---------------------------------------------------------------------------------------
// §1.1 connections

const connections: Entry[] = [
  {
    name: "conn/parser state carries over to the next client",
    instance: "shared",
    steps: [
      w('{"execute":"guest-pi'),
      { op: "pause", ms: 50 },
      { op: "close" },
      { op: "connect", conn: 1 },
      w('ng"}', 1),
      mark(undefined, 1),
    ],
    expect: ['{"return": {}}'],
  },
  {
    name: "conn/one client at a time",
    instance: "shared",
    steps: [
      { op: "connect", conn: 0 },
      w(J("guest-ping"), 0),
      mark(undefined, 0),
      { op: "connect", conn: 1 },
      w(J("guest-sync", { id: 1 }), 1),
      idle(1),
      w(J("guest-sync", { id: 0 }), 0),
      mark(undefined, 0),
      { op: "close", conn: 0 },
      mark(undefined, 1),
    ],
    expect: ['{"return": 1}'],
  },
  // A client that leaves before its request is read. It queues behind client 0 (one
  // client at a time), writes and closes; the agent reads its request and then EOF, so the
  // reply can only be lost or leak to the next client. (Closing *after* the reply was
  // written makes qemu-ga 7.2 read ECONNRESET, log "error reading channel" and exit with
  // status 0; that reference defect is not part of the corpus.)
  ...["guest-sync", "guest-sync-delimited"].map((cmd): Entry => ({
    name: `conn/${cmd} reply of a client that left is not sent to the next one`,
    instance: "shared",
    steps: [
      { op: "connect", conn: 0 },
      mark(undefined, 0),
      { op: "connect", conn: 1 },
      w(J(cmd, { id: 11 }), 1),
      { op: "pause", ms: 50 },
      { op: "close", conn: 1 },
      { op: "close", conn: 0 },
      { op: "pause", ms: 100 },
      w(J("guest-ping"), 2),
      mark(undefined, 2),
    ],
  })),
  {
    name: "conn/client that sends nothing",
    instance: "shared",
    steps: [
      { op: "connect", conn: 0 },
      { op: "close", conn: 0 },
      { op: "connect", conn: 1 },
      { op: "close", conn: 1 },
      w(J("guest-ping"), 2),
      mark(undefined, 2),
    ],
  },
  {
    name: "conn/three clients in turn",
    instance: "shared",
    steps: [0, 1, 2].flatMap((c): Step[] => [
      w(J("guest-sync", { id: c }), c),
      mark(undefined, c),
      { op: "close", conn: c },
    ]),
  },
  {
    name: "conn/request split across two clients with 0xFF reset by the second",
    instance: "shared",
    steps: [
      w('{"execute":"guest-sync","arguments":{"id":'),
      { op: "close" },
      { op: "connect", conn: 1 },
      w(cat(raw("\xff"), J("guest-sync", { id: 2 })), 1),
      mark(undefined, 1),
    ],
  },
  {
    name: "conn/a second client waiting while the first sends a split request",
    instance: "shared",
    steps: [
      { op: "connect", conn: 0 },
      w('{"execute":"guest-sync","arguments":{"id":', 0),
      { op: "connect", conn: 1 },
      w('{"execute":"guest-ping","id":"second"}', 1),
      idle(0, 200),
      w("3}}", 0),
      mark(undefined, 0),
      idle(1, 200),
      { op: "close", conn: 0 },
      mark(undefined, 1),
    ],
  },
];

// ---------------------------------------------------------------------------------------
// Other read-only commands

const commands: Entry[] = [
  one("cmd/guest-get-cpustats", J("guest-get-cpustats"), { masks: ["cpustats"] }),
  one("cmd/guest-get-diskstats", J("guest-get-diskstats"), { masks: ["diskstats"] }),
  one("cmd/guest-get-disks", J("guest-get-disks")),
  one(
    "cmd/guest-ssh-get-authorized-keys for a missing user",
    J("guest-ssh-get-authorized-keys", {
      username: "no-such-user-qgadiff",
    }),
  ),
  {
    name: "cmd/guest-get-timezone with TZ=America/New_York",
    instance: "fresh",
    start: { env: { TZ: "America/New_York" } },
    steps: [w(J("guest-get-timezone")), mark()],
  },
  {
    name: "cmd/guest-get-timezone with TZ=Asia/Kolkata",
    instance: "fresh",
    start: { env: { TZ: "Asia/Kolkata" } },
    steps: [w(J("guest-get-timezone")), mark()],
  },
];

/** The whole corpus, in run order. */
export const CORPUS: readonly Entry[] = [
  ...appendixB,
  ...testQga,
  ...json,
  ...request,
  ...argsEntries,
  ...files,
  ...connections,
  ...commands,
];
