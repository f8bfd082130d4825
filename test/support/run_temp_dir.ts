// One temporary directory per test run, removed when the run ends.
//
// Tests and the servers, engines and CLIs they start make their temporary
// directories under os.tmpdir(): data directories a test restarts a server on,
// engine data, certificates, sockets. Most are not removed one by one (a test
// that restarts a node needs its directory after the server stops), and runs
// left them in /tmp by the thousand: one machine's /tmp grew to 56 GB and
// later runs failed with ENOSPC. Pointing TMPDIR at a directory of this run's
// own when mocha requires this file, before it loads any test file, puts
// everything beneath it (node's os.tmpdir() reads TMPDIR on each call, and
// child processes inherit it), so removing that one directory at the end
// cleans up after every test. A run killed outright
// still leaves its directory; it is named qm-test-run-* so it is easy to find.

import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const outerTmpdir = process.env.TMPDIR;
const runDir = mkdtempSync(path.join(tmpdir(), "qm-test-run-"));
// Open as /tmp is (sticky, anyone may create): PostgreSQL's initdb runs as the
// postgres user (bench/contenders) and must reach its directory beneath this one.
chmodSync(runDir, 0o1777);
process.env.TMPDIR = runDir;

export function mochaGlobalTeardown(): void {
  if (outerTmpdir === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = outerTmpdir;
  try {
    rmSync(runDir, { recursive: true, force: true, maxRetries: 3 });
  } catch (error) {
    // A mount a failed test left behind (the tmpfs tests), say: say where, and do not fail the run over it.
    process.stderr.write(`could not remove the test run's temporary directory ${runDir}: ${error instanceof Error ? error.message : String(error)}\n`);
  }
}
