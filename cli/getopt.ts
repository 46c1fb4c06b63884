/**
 * glibc's `getopt_long` (2.36 semantics, not long_only), as qemu-ga's command line is
 * parsed: short option clusters, `--name=value`, unique-prefix abbreviations, glibc's
 * exact error texts, and non-options skipped (or ending parsing under POSIXLY_CORRECT).
 *
 * @module
 */

/** A long option as in `struct option`: `hasArg` 0 none, 1 required, 2 optional. */
export interface LongOption {
  readonly name: string;
  readonly hasArg: 0 | 1 | 2;
  /** What getopt returns: the short option letter, or a longer key for long-only options. */
  readonly val: string;
}

/** What one `getopt_long` call yields: an option with its argument, or an error text. */
export type GetoptEvent =
  | { readonly kind: "option"; readonly val: string; readonly arg: string | undefined }
  | { readonly kind: "error"; readonly message: string };

/** How to parse: short option string (getopt syntax) and long option tables. */
export interface GetoptSpec {
  /** e.g. `hVvdc:m:p:l:f:F::b:a:s:t:Dr`. */
  readonly short: string;
  /**
   * Long options in tiers. An exact name matches in any tier; abbreviations are
   * resolved in the first tier that has a prefix match, glibc-style inside the tier.
   * Tier 0 is qemu-ga's own table, so deno-qga's extensions never change how a qemu-ga
   * abbreviation resolves.
   */
  readonly long: readonly (readonly LongOption[])[];
  /** Program name for error texts (glibc prints argv[0]). */
  readonly programName: string;
  /** `POSIXLY_CORRECT` set: stop at the first non-option instead of skipping it. */
  readonly posixlyCorrect: boolean;
}

/** Argument kind of short option `c` in `spec`, or undefined if it is not an option. */
function shortArgKind(spec: string, c: string): 0 | 1 | 2 | undefined {
  if (c === ":" || c === ";") return undefined;
  const at = spec.indexOf(c);
  if (at < 0) return undefined;
  if (spec[at + 1] !== ":") return 0;
  return spec[at + 2] === ":" ? 2 : 1;
}

/** Finds a long option the way glibc's `process_long_option` does. */
function matchLong(
  tiers: GetoptSpec["long"],
  name: string,
): { found: LongOption } | { ambiguous: LongOption[] } | undefined {
  for (const tier of tiers) {
    const exact = tier.find((o) => o.name === name);
    if (exact !== undefined) return { found: exact };
  }
  for (const tier of tiers) {
    const prefixed = tier.filter((o) => o.name.startsWith(name));
    const first = prefixed[0];
    if (first === undefined) continue;
    const differing = prefixed.filter((o) => o.hasArg !== first.hasArg || o.val !== first.val);
    if (differing.length === 0) return { found: first };
    const set = new Set([first, ...differing]);
    return { ambiguous: tier.filter((o) => set.has(o)) };
  }
  return undefined;
}

/**
 * Walks `argv` (without the program name) like repeated `getopt_long` calls: yields
 * every option and every error (with glibc's exact text, without the newline) and
 * stops at `--` or at the end. Non-options are skipped (glibc permutes them to the
 * end; qemu-ga ignores them), or end parsing under POSIXLY_CORRECT.
 */
export function* getoptLong(argv: readonly string[], spec: GetoptSpec): Generator<GetoptEvent> {
  const prog = spec.programName;
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i] as string;
    if (arg === "--") return;
    if (arg.length < 2 || arg[0] !== "-") {
      if (spec.posixlyCorrect) return;
      i++;
      continue;
    }
    i++;
    if (arg.startsWith("--")) {
      const body = arg.slice(2);
      const eq = body.indexOf("=");
      const name = eq < 0 ? body : body.slice(0, eq);
      const m = matchLong(spec.long, name);
      if (m === undefined) {
        yield { kind: "error", message: `${prog}: unrecognized option '--${body}'` };
      } else if ("ambiguous" in m) {
        const names = m.ambiguous.map((o) => ` '--${o.name}'`).join("");
        yield {
          kind: "error",
          message: `${prog}: option '--${body}' is ambiguous; possibilities:${names}`,
        };
      } else {
        const o = m.found;
        if (eq >= 0) {
          if (o.hasArg === 0) {
            yield {
              kind: "error",
              message: `${prog}: option '--${o.name}' doesn't allow an argument`,
            };
          } else {
            yield { kind: "option", val: o.val, arg: body.slice(eq + 1) };
          }
        } else if (o.hasArg === 1) {
          if (i < argv.length) {
            yield { kind: "option", val: o.val, arg: argv[i++] };
          } else {
            yield { kind: "error", message: `${prog}: option '--${o.name}' requires an argument` };
          }
        } else {
          yield { kind: "option", val: o.val, arg: undefined };
        }
      }
      continue;
    }
    const chars = [...arg.slice(1)];
    for (let j = 0; j < chars.length; j++) {
      const c = chars[j] as string;
      const kind = shortArgKind(spec.short, c);
      if (kind === undefined) {
        yield { kind: "error", message: `${prog}: invalid option -- '${c}'` };
        continue;
      }
      if (kind === 0) {
        yield { kind: "option", val: c, arg: undefined };
        continue;
      }
      const rest = chars.slice(j + 1).join("");
      if (rest !== "") {
        yield { kind: "option", val: c, arg: rest };
      } else if (kind === 2) {
        yield { kind: "option", val: c, arg: undefined };
      } else if (i < argv.length) {
        yield { kind: "option", val: c, arg: argv[i++] };
      } else {
        yield { kind: "error", message: `${prog}: option requires an argument -- '${c}'` };
      }
      break;
    }
  }
}
