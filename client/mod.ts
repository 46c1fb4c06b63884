/**
 * Host-side client for the QEMU guest agent protocol, usable against qemu-ga and deno-qga.
 *
 * @example
 * ```ts
 * import { QgaClient } from "./client/mod.ts";
 *
 * await using client = await QgaClient.connect("/run/qga.sock");
 * console.log(await client.execute("guest-info"));
 * ```
 *
 * @module
 */

export {
  type ConnectOptions,
  type ExecuteOptions,
  type NoReplyOptions,
  QgaConnection,
  type QgaReply,
  SENTINEL_BYTE,
  type TextReply,
  unwrapReply,
} from "./connection.ts";
export {
  type CopyOptions,
  type CopyProgress,
  type CopyResult,
  DEFAULT_CHUNK,
  type ExecOptions,
  type ExecResult,
  MAX_READ_CHUNK,
  MAX_WRITE_CHUNK,
  QgaClient,
} from "./client.ts";
export {
  QgaClientError,
  QgaConnectionError,
  QgaProtocolError,
  QgaReplyError,
  QgaTimeoutError,
} from "./errors.ts";
export { type JsonValue, parseJson, stringifyJson } from "./json.ts";
export { type ByteChannel, ReplyReader, type ReplyReaderOptions } from "./reply_reader.ts";
