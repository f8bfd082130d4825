// What a qmctl command is: its words, flags and how its flags become one
// action. Commands are plain data in tables (commands.ts for the API calls,
// more files beside it), listed once in registry.ts; the parser, the help and
// "did you mean" all read that one list.

import type { Connection } from "./connection";
import { UsageError, parseInteger } from "./args";
import type { JsonValue } from "./json";
import type { CallOpts } from "./rpc";

/** A response in both forms; which one is printed is the caller's choice. */
export interface Output {
  readonly json: JsonValue;
  readonly text: string;
}

/** One action, ready to run: usually one API call. */
export interface PreparedCall {
  /** e.g. `InventoryService/AdjustStock`, for messages and tests. */
  readonly method: string;
  readonly request: unknown;
  /**
   * Runs it. The connection opens its channel on first use of a client, so a
   * command that needs no server (a local file operation) never connects.
   */
  execute(connection: Connection, opts: CallOpts): Promise<Output>;
}

export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
  /** Placeholder of the value in the usage, e.g. `SKU:QTY`. */
  readonly value?: string;
  readonly required?: boolean;
  readonly help: string;
}

export interface CommandSpec {
  /** Command words, e.g. `sku adjust`: one word, or a group word and a command word. */
  readonly name: string;
  readonly summary: string;
  /** Positional arguments, e.g. `<sku-id>` or `<sku-id>...`; `...` accepts one or more. */
  readonly args: readonly string[];
  readonly options: Readonly<Record<string, OptionSpec>>;
  /** What the usage line shows between the command and `[flags]` when it has alternative forms; default: its required flags. */
  readonly synopsis?: string;
  build(input: Flags): PreparedCall;
}

export type FlagValues = Readonly<Record<string, string | boolean | string[] | undefined>>;

/** Typed access to one command's parsed flags and positionals. */
export class Flags {
  constructor(
    private readonly values: FlagValues,
    readonly positionals: readonly string[],
    private readonly spec: CommandSpec,
  ) {}

  positional(index: number): string {
    const value = this.positionals[index];
    if (value === undefined) throw new UsageError(`missing ${this.spec.args[index] ?? "argument"}`);
    return value;
  }

  string(name: string): string | undefined {
    const value = this.values[name];
    return typeof value === "string" ? value : undefined;
  }

  required(name: string): string {
    const value = this.string(name);
    if (value === undefined) throw new UsageError(`--${name} is required`);
    return value;
  }

  integer(name: string): number | undefined {
    const value = this.string(name);
    return value === undefined ? undefined : parseInteger(value, `--${name}`);
  }

  requiredInteger(name: string): number {
    return parseInteger(this.required(name), `--${name}`);
  }

  boolean(name: string): boolean {
    return this.values[name] === true;
  }

  /** Whether the flag was given at all: for flags whose absence means "leave unchanged". */
  has(name: string): boolean {
    return this.values[name] !== undefined;
  }

  list(name: string): string[] {
    const value = this.values[name];
    if (value === undefined) return [];
    return (Array.isArray(value) ? value : [value]).filter((v): v is string => typeof v === "string");
  }
}

/** Wraps one typed call so that a command table can hold calls of any request and response type. */
export function prepare<Req, Res>(
  method: string,
  request: Req,
  invoke: (connection: Connection, request: Req, opts: CallOpts) => Promise<Res>,
  toJSON: (response: Res) => JsonValue,
  render: (response: Res) => string,
): PreparedCall {
  return {
    method,
    request,
    async execute(connection: Connection, opts: CallOpts): Promise<Output> {
      const response = await invoke(connection, request, opts);
      return { json: toJSON(response), text: render(response) };
    },
  };
}
