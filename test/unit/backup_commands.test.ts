import { expect } from "chai";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Io, run } from "../../src/cli/qmctl";

async function qmctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io: Io = { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t) };
  const code = await run(args, {}, io);
  return { code, stdout, stderr };
}

describe("qmctl backup and restore (arguments)", function () {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "qm-bkcli-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("needs --out for backup and both --from and --data-dir for restore: exit 2 with the usage", async () => {
    const backup = await qmctl(["--addr", "127.0.0.1:1", "backup"]);
    expect(backup.code).to.equal(2);
    expect(backup.stderr).to.include("error: --out is required");
    expect(backup.stderr).to.include("Usage: qmctl backup --out FILE");
    const restore = await qmctl(["restore", "--from", "x"]);
    expect(restore.code).to.equal(2);
    expect(restore.stderr).to.include("error: --data-dir is required");
  });

  it("refuses an unknown flag with exit 2, and prints help with exit 0", async () => {
    const unknown = await qmctl(["restore", "--from", "x", "--data-dir", "y", "--force"]);
    expect(unknown.code).to.equal(2);
    expect(unknown.stderr).to.include('unknown flag --force for "restore"');
    const help = await qmctl(["backup", "--help"]);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/^Usage: qmctl backup --out FILE/);
  });

  it("restore from a missing file exits 4 and creates no data directory", async () => {
    const target = join(dir, "target");
    const result = await qmctl(["restore", "--from", join(dir, "missing.qmbackup"), "--data-dir", target]);
    expect(result.code).to.equal(4);
    expect(result.stderr).to.include(`error: NOT_FOUND: backup file ${join(dir, "missing.qmbackup")} not found (or not a regular file)\n`);
    expect(existsSync(target)).to.equal(false);
  });

  it("backup to an unreachable server exits 6 and leaves no file behind", async () => {
    const out = join(dir, "b.qmbackup");
    const result = await qmctl(["--addr", "127.0.0.1:1", "backup", "--out", out, "--timeout", "2s"]);
    expect(result.code).to.equal(6);
    expect(result.stderr).to.match(/^error: cannot reach a Quartermaster server at 127\.0\.0\.1:1 \(--addr\): connection refused/);
    expect(existsSync(out)).to.equal(false);
    expect(existsSync(`${out}.partial`)).to.equal(false);
  });

  it("lists backup and restore in qmctl --help", async () => {
    const help = await qmctl(["--help"]);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/^ {2}backup +stream a consistent online backup/m);
    expect(help.stdout).to.match(/^ {2}restore +write a new data directory from a backup FILE/m);
  });
});
