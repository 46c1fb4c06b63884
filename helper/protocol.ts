/**
 * The wire protocol between the agent and the privileged helper, shared by both
 * sides. Types and encoding only: nothing here touches the file system.
 *
 * The agent writes requests to the helper's stdin and reads replies from its
 * stdout. Every message is one frame:
 *
 * ```
 * offset 0  u8   type     (an Op for requests, a Reply for replies)
 * offset 1  u32  id       (big-endian; chosen by the agent, echoed in the reply)
 * offset 5  u32  length   (big-endian; payload bytes that follow)
 * offset 9  ...  payload
 * ```
 *
 * Requests may be answered out of order (a channel read can wait for the host
 * while a /proc read completes), so the agent matches replies by id. Every
 * request gets exactly one reply. Payloads:
 *
 * | request        | payload                                      | success reply           |
 * |----------------|----------------------------------------------|-------------------------|
 * | ReadFile       | path (UTF-8)                                 | Data: the file's bytes  |
 * | ReadDir        | path                                         | Json: {@link WireDirEntry}[] |
 * | ReadLink       | path                                         | Text: the link target   |
 * | RealPath       | path                                         | Text: canonical path    |
 * | Exists         | path                                         | Json: boolean           |
 * | Statfs         | path (must be a current mount point)          | Json: {@link WireStatfs} |
 * | WriteFile      | Json {@link WriteFileRequest}                | Ok                      |
 * | ChannelOpen    | Json {@link ChannelOpenRequest}              | Json: {@link ChannelOpenReply} |
 * | ChannelRead    | u32 channel, u32 max bytes                   | Data (≥1 byte) or Eof   |
 * | ChannelWrite   | u32 channel, then the bytes                  | Ok (all bytes written)  |
 * | ChannelClose   | u32 channel                                  | Ok                      |
 * | Init           | Json {@link InitRequest} (first request only) | Json {@link InitReply} |
 * | Run            | Json ProgramRequest (helper/programs.ts)     | Json: {@link RunReply}  |
 * | AuthorizedKeys | Json AuthKeysRequest (helper/authorized_keys.ts) | Json: AuthKeysReply |
 * | NetSnapshot    | (empty)                                      | Json: NetSnapshot (helper/net.ts) |
 * | FsSnapshot     | Json FsSnapshotRequest (helper/fs_snapshot.ts) | Json: FsSnapshot      |
 *
 * Any request may instead get an Error reply: Json {@link WireError}.
 * Channel bytes travel raw in Data and ChannelWrite payloads (no base64).
 *
 * @module
 */

/** Request types (agent to helper). */
export const Op = {
  ReadFile: 1,
  ReadDir: 2,
  ReadLink: 3,
  RealPath: 4,
  Exists: 5,
  Statfs: 6,
  WriteFile: 7,
  ChannelOpen: 8,
  ChannelRead: 9,
  ChannelWrite: 10,
  ChannelClose: 11,
  Init: 12,
  Run: 13,
  AuthorizedKeys: 14,
  NetSnapshot: 15,
  FsSnapshot: 16,
} as const;

/** A request type. */
export type Op = typeof Op[keyof typeof Op];

/** Reply types (helper to agent). */
export const Reply = {
  Ok: 128,
  Data: 129,
  Text: 130,
  Json: 131,
  Eof: 132,
  Error: 133,
} as const;

/** A reply type. */
export type Reply = typeof Reply[keyof typeof Reply];

/** Bytes of the frame header. */
export const HEADER_SIZE = 9;

/**
 * Largest request payload the helper accepts; bigger frames end the session.
 * Channel writes use most of it: a 64 MiB reply goes out in 64 writes, not 1024.
 */
export const MAX_REQUEST_PAYLOAD = 1024 * 1024 + 64;

/** Largest file the helper reads (reads beyond fail with EFBIG). */
export const MAX_FILE_SIZE = 8 * 1024 * 1024;

/** Largest reply payload (file reads plus JSON overhead). */
export const MAX_REPLY_PAYLOAD = MAX_FILE_SIZE + 64 * 1024;

/**
 * Largest `max` of one ChannelRead (qemu-ga reads 4096 bytes at a time; a virtio
 * port hands over at most a page per read, so the helper reads ahead and answers
 * with everything that has arrived, up to this).
 */
export const MAX_CHANNEL_READ = 1024 * 1024;

/** Longest path accepted (PATH_MAX). */
export const MAX_PATH = 4096;

/** One decoded frame. */
export interface Frame {
  type: number;
  id: number;
  payload: Uint8Array;
}

/** A directory entry as the helper sends it. */
export interface WireDirEntry {
  name: string;
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
}

/** statvfs figures as the helper sends them. */
export interface WireStatfs {
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
}

/** WireStatfs from what node:fs's statfs returns (no `frsize` there: `bsize` stands in). */
export function toWireStatfs(s: unknown): WireStatfs {
  const f = s as { frsize?: number; bsize: number; blocks: number; bfree: number; bavail: number };
  return { frsize: f.frsize ?? f.bsize, blocks: f.blocks, bfree: f.bfree, bavail: f.bavail };
}

/** Payload of WriteFile. */
export interface WriteFileRequest {
  path: string;
  data: string;
}

/** How a channel device is prepared. */
export type ChannelMode = "virtio-serial" | "isa-serial";

/** Payload of ChannelOpen. */
export interface ChannelOpenRequest {
  path: string;
  mode: ChannelMode;
}

/** Reply to ChannelOpen. */
export interface ChannelOpenReply {
  channel: number;
  /** The device actually opened (after resolving symlinks). */
  device: string;
}

/**
 * Payload of Init: what is fixed for the helper's whole life, sent by the agent
 * as its first request, before it reads anything from the host. The agent then
 * gives up its permission to start the launcher again (system/helper_client.ts),
 * so a compromised agent can neither re-initialise this helper nor start another.
 */
export interface InitRequest {
  /** The fsfreeze hook (`-F`), run with `freeze` or `thaw`; null for none. */
  fsfreezeHook: string | null;
  /** The one channel device the helper may open; null for none (a socket method). */
  channel: ChannelOpenRequest | null;
}

/** Reply to Init: whether the helper recorded the settings for its agent process. */
export interface InitReply {
  /**
   * True when a record backs them (helper/init_record.ts): the agent may then let this
   * helper exit when idle and start another, which takes the same settings.
   */
  recorded: boolean;
}

/**
 * Reply to Run: how the program ended and its stdout and stderr, merged in arrival
 * order (base64), or why it could not be started (errno name and text).
 */
export type RunReply =
  | { code: number | null; signal: string | null; output: string }
  | { spawnError: string; message: string };

/** Payload of an Error reply: errno name plus a message naming the op and path. */
export interface WireError {
  code: string;
  message: string;
  /** Set when the helper refused the request rather than failed to do it. */
  refused?: true;
}

/** Builds one frame. */
export function encodeFrame(
  type: number,
  id: number,
  payload: Uint8Array = new Uint8Array(),
): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, type);
  view.setUint32(1, id >>> 0);
  view.setUint32(5, payload.length);
  out.set(payload, HEADER_SIZE);
  return out;
}

const ENCODER = new TextEncoder();
/** Whole-payload decodes only (never `stream: true`), so one decoder serves every call. */
const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Encodes a value as a JSON payload. */
export function jsonPayload(value: unknown): Uint8Array {
  return ENCODER.encode(JSON.stringify(value));
}

/** Decodes a JSON payload. */
export function parseJsonPayload(payload: Uint8Array): unknown {
  return JSON.parse(STRICT_UTF8.decode(payload));
}

/** Decodes a UTF-8 text payload (invalid UTF-8 throws TypeError). */
export function textPayload(payload: Uint8Array): string {
  return STRICT_UTF8.decode(payload);
}

/** Payload of ChannelRead: channel number and the most bytes wanted. */
export function channelReadPayload(channel: number, max: number): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, channel);
  view.setUint32(4, max);
  return out;
}

/** Payload of ChannelWrite: channel number, then the bytes. */
export function channelWritePayload(channel: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + data.length);
  new DataView(out.buffer).setUint32(0, channel);
  out.set(data, 4);
  return out;
}

/** Payload of ChannelClose. */
export function channelPayload(channel: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, channel);
  return out;
}

/** Reads the u32 at `offset` of a payload; throws RangeError when it is too short. */
export function payloadU32(payload: Uint8Array, offset: number): number {
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(offset);
}

/**
 * Splits a byte stream into frames. Feed it chunks as they arrive; it yields
 * every complete frame and keeps the remainder.
 *
 * @example
 * ```ts
 * const d = new FrameDecoder(MAX_REQUEST_PAYLOAD);
 * for (const f of d.push(chunk)) handle(f);
 * ```
 */
export class FrameDecoder {
  #buf: Uint8Array = new Uint8Array(4096);
  #start = 0;
  #end = 0;
  readonly #max: number;

  /** `maxPayload`: a header announcing more throws {@link FrameTooLarge}. */
  constructor(maxPayload: number) {
    this.#max = maxPayload;
  }

  /** Adds bytes; returns the frames completed by them. */
  push(chunk: Uint8Array): Frame[] {
    this.#append(chunk);
    const frames: Frame[] = [];
    while (this.#end - this.#start >= HEADER_SIZE) {
      const view = new DataView(this.#buf.buffer, this.#start, HEADER_SIZE);
      const type = view.getUint8(0);
      const id = view.getUint32(1);
      const len = view.getUint32(5);
      if (len > this.#max) throw new FrameTooLarge(len, this.#max, id);
      if (this.#end - this.#start - HEADER_SIZE < len) break;
      const at = this.#start + HEADER_SIZE;
      frames.push({ type, id, payload: this.#buf.slice(at, at + len) });
      this.#start = at + len;
    }
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return frames;
  }

  /** Bytes held that do not yet form a frame. */
  get pending(): number {
    return this.#end - this.#start;
  }

  #append(chunk: Uint8Array): void {
    const used = this.#end - this.#start;
    if (this.#buf.length - this.#end < chunk.length) {
      // Compact, growing geometrically so large frames cost linear time.
      let size = this.#buf.length;
      while (size < used + chunk.length) size *= 2;
      const next = size === this.#buf.length ? this.#buf : new Uint8Array(size);
      next.set(this.#buf.subarray(this.#start, this.#end), 0);
      this.#buf = next;
      this.#start = 0;
      this.#end = used;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }
}

/** A frame header announced a payload larger than allowed. */
export class FrameTooLarge extends Error {
  /** The announced and the allowed length, and the frame's id. */
  constructor(readonly length: number, readonly max: number, readonly id: number) {
    super(`frame payload of ${length} bytes exceeds the limit of ${max}`);
    this.name = "FrameTooLarge";
  }
}

/** An operation failed or was refused; `code` is the errno name sent to the agent. */
export class OpError extends Error {
  /** errno name ("EPERM" for most refusals). */
  readonly code: string;
  /** True for a refusal by the helper (see {@link refusal}), sent to the agent as such. */
  readonly refused: boolean;
  constructor(code: string, message: string, refused = false) {
    super(message);
    this.name = "OpError";
    this.code = code;
    this.refused = refused;
  }
}

/** The helper will not do `what`: an OpError `helper refused <what>`, marked as a refusal. */
export function refusal(code: string, what: string): OpError {
  return new OpError(code, `helper refused ${what}`, true);
}

/** The mount points of a mountinfo text that qemu-ga may statvfs (escapes decoded). */
export function statfsPoints(mountinfo: string): string[] {
  const out = new Set<string>();
  for (const line of mountinfo.split("\n")) {
    const f = line.split(" ");
    const dash = f.indexOf("-", 5);
    if (f.length < 5 || dash < 0) continue;
    if (f[2]!.startsWith("0:") && f[dash + 1] !== "btrfs") continue;
    out.add(
      f[4]!.replace(/\\([0-3][0-7][0-7])/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    );
  }
  return [...out];
}
