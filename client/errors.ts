/**
 * Errors thrown by {@linkcode QgaClient}. Every one extends {@linkcode QgaClientError}, so a
 * caller can tell agent and transport failures apart from bugs with one `instanceof`.
 *
 * @module
 */

/** Base class of every error the client throws on purpose. */
export class QgaClientError extends Error {
  /** Creates the error; `options.cause` keeps the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "QgaClientError";
  }
}

/**
 * The agent answered `{"error": {"class": ..., "desc": ...}}`.
 *
 * @example
 * ```ts
 * try {
 *   await client.execute("guest-nope");
 * } catch (e) {
 *   if (e instanceof QgaReplyError) console.log(e.errorClass, e.desc);
 * }
 * ```
 */
export class QgaReplyError extends QgaClientError {
  /** The qemu-ga error class, e.g. `"GenericError"` or `"CommandNotFound"`. */
  readonly errorClass: string;
  /** The human-readable text the agent sent. */
  readonly desc: string;
  /** The command the reply belongs to. */
  readonly command: string;

  /** Creates the error from the reply's class and desc. */
  constructor(errorClass: string, desc: string, command: string) {
    super(`${errorClass}: ${desc}`);
    this.name = "QgaReplyError";
    this.errorClass = errorClass;
    this.desc = desc;
    this.command = command;
  }
}

/** No (complete) reply arrived in time. The client resynchronises before its next command. */
export class QgaTimeoutError extends QgaClientError {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "QgaTimeoutError";
  }
}

/** The agent closed the connection (or the socket failed) before the reply was complete. */
export class QgaConnectionError extends QgaClientError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "QgaConnectionError";
  }
}

/** The agent sent something that is not a reply object, or a reply too big to accept. */
export class QgaProtocolError extends QgaClientError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "QgaProtocolError";
  }
}
