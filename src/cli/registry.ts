// Every qmctl command, in the order the help lists them. To add commands,
// write a table of CommandSpec in a new file under src/cli/ and add it here:
// parsing, --help, "did you mean" and the README's grammar all read this list.

import { BACKUP_COMMANDS } from "./backup_commands";
import type { CommandSpec } from "./command_spec";
import { CLUSTER_COMMANDS } from "./cluster_commands";
import { API_COMMANDS } from "./commands";

export const COMMANDS: readonly CommandSpec[] = [...API_COMMANDS, ...CLUSTER_COMMANDS, ...BACKUP_COMMANDS];
