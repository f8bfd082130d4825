// `qmctl scrub --data-dir DIR [--json]`: offline verification of a stopped
// node's data directory (src/journal/scrub.ts). Unlike every other qmctl
// command it calls no server: it reads the files, and refuses a directory a
// running node holds.
//
// Exit codes: 0 clean; 1 damage found (every damaged actor is printed);
// 2 usage; 4 no such directory; 5 the directory is in use.

import { QmError } from "../errors";
import { scrubDataDir, type ScrubReport } from "../journal/scrub";
import { EXIT_NOT_FOUND, EXIT_OK, EXIT_OTHER, EXIT_PRECONDITION, EXIT_USAGE } from "./exit_codes";
import type { Io } from "./qmctl";

export const SCRUB_USAGE = "usage: qmctl scrub --data-dir DIR [--json]";

export async function runScrub(argv: readonly string[], io: Io): Promise<number> {
  let dataDir: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--json") json = true;
    else if (arg === "--data-dir" && argv[i + 1] !== undefined) dataDir = argv[++i];
    else if (arg.startsWith("--data-dir=")) dataDir = arg.slice("--data-dir=".length);
    else if (arg === "--help" || arg === "-h") {
      io.stdout(`${SCRUB_USAGE}\n`);
      return EXIT_OK;
    } else {
      io.stderr(`error: unexpected argument ${JSON.stringify(arg)}\n${SCRUB_USAGE}\n`);
      return EXIT_USAGE;
    }
  }
  if (dataDir === undefined || dataDir === "") {
    io.stderr(`error: --data-dir is required\n${SCRUB_USAGE}\n`);
    return EXIT_USAGE;
  }
  let report: ScrubReport;
  try {
    report = await scrubDataDir(dataDir);
  } catch (error) {
    if (error instanceof QmError) {
      io.stderr(`error: ${error.code}: ${error.message}\n`);
      return error.code === "NOT_FOUND" ? EXIT_NOT_FOUND : error.code === "FAILED_PRECONDITION" ? EXIT_PRECONDITION : EXIT_OTHER;
    }
    io.stderr(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT_OTHER;
  }
  io.stdout(json ? `${JSON.stringify(report)}\n` : render(report));
  return report.clean ? EXIT_OK : EXIT_OTHER;
}

function render(report: ScrubReport): string {
  const counts = Object.entries(report.records)
    .map(([keyspace, n]) => `${keyspace} ${n}`)
    .join(", ");
  const out = [`scrub ${report.dataDir}: ${report.clean ? "clean" : "DAMAGED"}${counts === "" ? "" : ` (records: ${counts})`}`];
  for (const problem of report.problems) out.push(`problem: ${problem}`);
  for (const { actorId, problems } of report.damaged) out.push(`damaged ${actorId}: ${problems.join("; ")}`);
  if (report.damagedNotListed > 0) out.push(`... and ${report.damagedNotListed} more damaged actors not listed`);
  if (!report.clean) out.push(`${report.damaged.length + report.damagedNotListed} damaged actors, ${report.problems.length} other problems`);
  return `${out.join("\n")}\n`;
}
