// qmctl's command-line grammar: global flags, command words, then the
// command's flags and arguments, read against the command table in
// registry.ts. Pure, so that the unit tests pin it down without a server.
//
// Flags are read here rather than by node's parseArgs: its messages are written
// for programmers ("To specify a positional argument starting with a '-',
// place it at the end of the command after '--'…"), and it refuses `--delta -5`
// as ambiguous. Here a mistake is one line that names the flag, offers the
// closest known one, and points at --help.

import { AddressError, type AddrSource, type ServerAddress, parseServerAddress } from "./address";
import { UsageError, parseDurationMs } from "./args";
import { type CommandSpec, type FlagValues, Flags, type OptionSpec, type PreparedCall } from "./command_spec";
import { EXIT_CODES_HELP } from "./exit_codes";
import { COMMANDS } from "./registry";
import { didYouMean } from "./suggest";
import { type ClientTls, clientTls } from "./tls";

export const ADDR_DEFAULT = "127.0.0.1:50051";
export const TIMEOUT_MS_DEFAULT = 10_000;

export interface GlobalOptions {
  readonly addr: ServerAddress;
  readonly json: boolean;
  readonly timeoutMs: number;
  /** Bearer token sent as `authorization` metadata with every call (--token, else QM_TOKEN). */
  readonly token: string | undefined;
  /** Absent: plaintext. */
  readonly tls?: ClientTls;
}

export type ParsedCommandLine =
  | { readonly kind: "help"; readonly text: string }
  | { readonly kind: "version" }
  | { readonly kind: "call"; readonly command: string; readonly global: GlobalOptions; readonly call: PreparedCall };

export const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  addr: { type: "string", value: "HOST:PORT", help: `server address (env QM_ADDR, else ${ADDR_DEFAULT}); also :PORT, PORT, [IPv6]:PORT, http://HOST:PORT` },
  json: { type: "boolean", help: "print the response (or the error, on stderr) as one JSON object with every field" },
  timeout: { type: "string", value: "MS", help: `deadline of the call in ms, or a duration like 30s (default ${TIMEOUT_MS_DEFAULT})` },
  token: { type: "string", value: "JWT", help: "bearer token for a server with QM_AUTH_CONFIG (env QM_TOKEN, which keeps it out of ps and shell history)" },
  "tls-ca": { type: "string", value: "FILE", help: "TLS: PEM CA bundle the server's certificate must chain to (env QM_TLS_CA); https:// in --addr alone uses the system's CAs" },
  "tls-cert": { type: "string", value: "FILE", help: "mutual TLS: PEM client certificate, with --tls-key (env QM_TLS_CLIENT_CERT)" },
  "tls-key": { type: "string", value: "FILE", help: "mutual TLS: PEM private key of --tls-cert (env QM_TLS_CLIENT_KEY)" },
  help: { type: "boolean", short: "h", help: "show help" },
  version: { type: "boolean", help: "print qmctl's version" },
};

/**
 * A command line qmctl cannot read. `hint` is what follows the one-line
 * message: a pointer to --help, and for a known command its synopsis.
 */
export class CommandUsageError extends UsageError {
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message);
  }
}

/** Words that start a command of several words (`sku get`); the rest are single words (`reserve`). */
function groups(): Set<string> {
  return new Set(COMMANDS.filter((c) => c.name.includes(" ")).map((c) => c.name.split(" ")[0] ?? ""));
}

function optionLines(options: Readonly<Record<string, OptionSpec>>): string[] {
  const rows = Object.entries(options).map(([name, o]) => {
    const short = o.short === undefined ? "" : `-${o.short}, `;
    const flag = `${short}--${name}${o.value === undefined ? "" : ` ${o.value}`}`;
    const tags = [o.required ? "required" : "", o.multiple ? "repeatable" : ""].filter((t) => t !== "");
    return [flag, o.help + (tags.length === 0 ? "" : ` (${tags.join(", ")})`)] as const;
  });
  const width = Math.max(0, ...rows.map(([flag]) => flag.length));
  return rows.map(([flag, help]) => `  ${flag.padEnd(width)}  ${help}`);
}

function synopsis(spec: CommandSpec): string {
  const required = Object.entries(spec.options)
    .filter(([, o]) => o.required)
    .map(([name, o]) => `--${name} ${o.value ?? ""}`.trimEnd() + (o.multiple ? "..." : ""));
  return ["qmctl", spec.name, ...spec.args, ...(spec.synopsis === undefined ? required : [spec.synopsis]), "[flags]"].join(" ");
}

export function commandUsage(spec: CommandSpec): string {
  const ownOptions = optionLines(spec.options);
  return [
    `Usage: ${synopsis(spec)}`,
    "",
    spec.summary,
    ...(ownOptions.length > 0 ? ["", "Flags:", ...ownOptions] : []),
    "",
    "Global flags:",
    ...optionLines(GLOBAL_OPTIONS),
  ].join("\n");
}

export function generalUsage(group?: string): string {
  const specs = COMMANDS.filter((c) => group === undefined || c.name.startsWith(`${group} `));
  const width = Math.max(...specs.map((c) => c.name.length));
  return [
    `Usage: qmctl ${group ?? "<command>"}${group === undefined ? "" : " <command>"} [args] [flags]`,
    "",
    "Commands:",
    ...specs.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    // scrub parses its own flags (src/cli/scrub.ts), since its exit code reports what it found.
    ...(group === undefined ? [`  ${"scrub".padEnd(width)}  verify a stopped node's data directory offline (--data-dir DIR [--json]); exit 1 when damage is found`] : []),
    "",
    "Global flags:",
    ...optionLines(GLOBAL_OPTIONS),
    "",
    `Run "qmctl <command> --help" for a command's flags.`,
    "",
    EXIT_CODES_HELP,
  ].join("\n");
}

function commandHint(spec: CommandSpec, withSynopsis: boolean): string {
  const pointer = `Run "qmctl ${spec.name} --help" for its flags.`;
  return withSynopsis ? `Usage: ${synopsis(spec)}\n${pointer}` : pointer;
}

/** `-5` and `-1.5` are values, never flags of ours; `-` alone is a value too (stdin, by convention). */
function looksLikeFlag(arg: string): boolean {
  return arg.length > 1 && arg.startsWith("-") && !/^-\d/.test(arg);
}

/** A flag no table knows: printed without the synopsis, since the pointer to --help is the whole list. */
class UnknownFlagError extends UsageError {}

function unknownFlag(arg: string, options: Readonly<Record<string, OptionSpec>>, where: string): UnknownFlagError {
  const name = arg.replace(/^--?/, "").split("=")[0] ?? "";
  const suggestion = didYouMean(name, Object.keys(options), (n) => `--${n}`);
  return new UnknownFlagError(`unknown flag ${arg.split("=")[0] ?? arg}${where}${suggestion}`);
}

function lookup(arg: string, options: Readonly<Record<string, OptionSpec>>): [string, OptionSpec] | undefined {
  if (arg.startsWith("--")) {
    const name = arg.slice(2).split("=")[0] ?? "";
    const option = options[name];
    return option === undefined ? undefined : [name, option];
  }
  const short = arg.slice(1);
  return Object.entries(options).find(([, o]) => o.short === short);
}

interface ReadFlags {
  readonly values: Record<string, string | boolean | string[]>;
  readonly positionals: string[];
}

/**
 * Reads `--name value`, `--name=value`, boolean `--name`, `-h`, and `--`
 * (everything after it is an argument). A string flag takes the next word as
 * its value unless that word is itself a flag: `--note --json` is a missing
 * note, not a note saying "--json" (write `--note=--json` for that).
 */
function readFlags(args: readonly string[], options: Readonly<Record<string, OptionSpec>>, where: string): ReadFlags {
  const values: Record<string, string | boolean | string[]> = {};
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!looksLikeFlag(arg)) {
      positionals.push(arg);
      continue;
    }
    const found = lookup(arg, options);
    if (found === undefined) throw unknownFlag(arg, options, where);
    const [name, option] = found;
    const eq = arg.indexOf("=");
    if (option.type === "boolean") {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      values[name] = true;
      continue;
    }
    let value: string;
    if (eq >= 0) {
      value = arg.slice(eq + 1);
    } else {
      const next = args[i + 1];
      if (next === undefined || looksLikeFlag(next)) throw new UsageError(`--${name} needs a value (${option.value ?? "VALUE"})`);
      value = next;
      i++;
    }
    const previous = values[name];
    if (option.multiple) {
      values[name] = [...(Array.isArray(previous) ? previous : []), value];
    } else {
      // Last-one-wins would hide a typo in a long command line; a flag given twice is one of two mistakes.
      if (previous !== undefined) throw new UsageError(`--${name} given more than once`);
      values[name] = value;
    }
  }
  return { values, positionals };
}

/** The leading global flags, read before the command words; returns how many words they took. */
function leadingGlobals(argv: readonly string[]): number {
  let i = 0;
  while (i < argv.length && looksLikeFlag(argv[i] ?? "")) {
    const arg = argv[i] ?? "";
    if (arg === "--") break;
    const found = lookup(arg, GLOBAL_OPTIONS);
    if (found === undefined) throw new CommandUsageError(unknownFlag(arg, GLOBAL_OPTIONS, " before the command").message, GENERAL_POINTER);
    const [name, option] = found;
    const takesNext = option.type === "string" && !arg.includes("=");
    const next = argv[i + 1];
    if (takesNext && (next === undefined || looksLikeFlag(next))) {
      throw new CommandUsageError(`--${name} needs a value (${option.value ?? "VALUE"})`, GENERAL_POINTER);
    }
    i += takesNext ? 2 : 1;
  }
  return Math.min(i, argv.length);
}

const GENERAL_POINTER = `Run "qmctl --help" for the commands.`;

function parseTimeoutMs(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : parseDurationMs(text, "--timeout");
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new UsageError(`--timeout: "${text}" is not a positive number of ms`);
  return ms;
}

function globalOptions(flags: Flags, env: Readonly<Record<string, string | undefined>>): GlobalOptions {
  const given = flags.string("addr");
  const fromEnv = nonEmpty(env["QM_ADDR"]);
  const [text, source]: [string, AddrSource] =
    given !== undefined ? [given, "--addr"] : fromEnv !== undefined ? [fromEnv, "QM_ADDR"] : [ADDR_DEFAULT, "default"];
  const timeout = flags.string("timeout");
  const addr = parseServerAddress(text, source);
  const tls = clientTls((name) => flags.string(name), env, addr.tls === true);
  return {
    addr,
    json: flags.boolean("json"),
    timeoutMs: timeout === undefined ? TIMEOUT_MS_DEFAULT : parseTimeoutMs(timeout),
    token: parseToken(flags.string("token") ?? nonEmpty(env["QM_TOKEN"]?.trim())),
    ...(tls === undefined ? {} : { tls }),
  };
}

/** A JWT is three base64url parts; anything else (a pasted "Bearer ..." or a newline) would be refused by the server with a vaguer message. */
function parseToken(token: string | undefined): string | undefined {
  if (token === undefined) return undefined;
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) {
    throw new UsageError("--token / QM_TOKEN: expected a JWT (header.payload.signature), without the \"Bearer \" prefix");
  }
  return token;
}

/** Finds the command the words name, or explains, with the closest names, why there is none. */
function findCommand(words: readonly string[], wantsHelp: boolean): { spec: CommandSpec; used: number } | ParsedCommandLine {
  const groupNames = groups();
  const first = words[0] ?? "";
  const isGroup = groupNames.has(first);
  const second = words[1];
  const name = isGroup ? `${first} ${second ?? ""}` : first;
  const spec = COMMANDS.find((c) => c.name === name);
  if (spec !== undefined) return { spec, used: isGroup ? 2 : 1 };
  if (isGroup && (second === undefined || second === "--help" || second === "-h")) {
    if (second !== undefined || wantsHelp) return { kind: "help", text: generalUsage(first) };
    throw new CommandUsageError(`"${first}" needs a command`, generalUsage(first));
  }
  if (isGroup) {
    const inGroup = COMMANDS.filter((c) => c.name.startsWith(`${first} `)).map((c) => c.name);
    const suggestion = didYouMean(name, inGroup, (n) => `"${n}"`);
    throw new CommandUsageError(`unknown command "${name}"${suggestion}`, `Run "qmctl ${first} --help" for its commands.`);
  }
  const singles = [...COMMANDS.filter((c) => !c.name.includes(" ")).map((c) => c.name), ...groupNames];
  const suggestion = didYouMean(first, singles, (n) => `"${n}"`);
  throw new CommandUsageError(`unknown command "${first}"${suggestion}`, GENERAL_POINTER);
}

/**
 * Turns argv (without node and the script) into a call, help text or the
 * version. Throws CommandUsageError for anything it cannot read.
 */
export function parseCommandLine(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParsedCommandLine {
  const start = leadingGlobals(argv);
  const leading = argv.slice(0, start);
  const words = argv.slice(start);
  const first = words[0];
  const wantsHelp = leading.includes("--help") || leading.includes("-h");
  if (leading.includes("--version")) return { kind: "version" };

  if (first === undefined || first === "help" || first === "--") {
    const topic = words.slice(1).join(" ");
    const spec = COMMANDS.find((c) => c.name === topic);
    if (spec !== undefined) return { kind: "help", text: commandUsage(spec) };
    if (groups().has(topic)) return { kind: "help", text: generalUsage(topic) };
    if (first === "help" || wantsHelp) return { kind: "help", text: generalUsage() };
    throw new CommandUsageError("no command given", generalUsage());
  }
  const found = findCommand(words, wantsHelp);
  if ("kind" in found) return found;
  const { spec, used } = found;

  try {
    const options = { ...GLOBAL_OPTIONS, ...spec.options };
    const read = readFlags([...leading, ...words.slice(used)], options, ` for "${spec.name}"`);
    if (read.values["version"] === true) return { kind: "version" };
    if (read.values["help"] === true) return { kind: "help", text: commandUsage(spec) };
    checkArity(spec, read);
    const flags = new Flags(read.values as FlagValues, read.positionals, spec);
    return { kind: "call", command: spec.name, global: globalOptions(flags, env), call: spec.build(flags) };
  } catch (err) {
    if (err instanceof CommandUsageError || !(err instanceof UsageError)) throw err;
    // The synopsis helps with a missing or malformed argument; an unknown flag or a bad address needs only the pointer.
    const withSynopsis = !(err instanceof UnknownFlagError || err instanceof AddressError);
    throw new CommandUsageError(err.message, commandHint(spec, withSynopsis));
  }
}

function checkArity(spec: CommandSpec, read: ReadFlags): void {
  const variadic = spec.args.some((a) => a.endsWith("..."));
  const minArgs = spec.args.length;
  if (read.positionals.length < minArgs) {
    throw new UsageError(`missing ${spec.args.slice(read.positionals.length).join(" ")}`);
  }
  if (!variadic && read.positionals.length > minArgs) {
    throw new UsageError(`unexpected argument "${read.positionals[minArgs] ?? ""}"`);
  }
  for (const [n, o] of Object.entries(spec.options)) {
    if (o.required && read.values[n] === undefined) throw new UsageError(`--${n} is required`);
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/** Every command's synopsis, one per line: the grammar at a glance (the README quotes it). */
export function grammar(): string {
  return COMMANDS.map(synopsis).join("\n");
}
