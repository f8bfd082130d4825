// No Docker engine runs on these machines and no maintained Dockerfile linter
// ships on npm (dockerfilelint is archived upstream; the npm `hadolint`
// package only wraps a binary it does not ship), so this test parses
// deploy/Dockerfile and checks the properties the service depends on.

import { expect } from "chai";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

const REPO_ROOT = path.resolve(__dirname, "../../..");

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

/** Instructions of a Dockerfile: comments dropped, backslash continuations joined. */
export function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1).trimEnd()} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    const space = full.search(/\s/);
    instructions.push({ keyword: full.slice(0, space).toUpperCase(), args: full.slice(space + 1).trim() });
  }
  return instructions;
}

/** The final stage: what the image runs. */
function runtimeStage(instructions: readonly Instruction[]): Instruction[] {
  const lastFrom = instructions.map((i) => i.keyword).lastIndexOf("FROM");
  return instructions.slice(lastFrom);
}

function execForm(args: string): string[] {
  const parsed: unknown = JSON.parse(args);
  expect(parsed, `exec form (a JSON array) expected: ${args}`).to.be.an("array");
  return parsed as string[];
}

describe("deploy/Dockerfile", () => {
  const stage = runtimeStage(parseDockerfile(readFileSync(path.join(REPO_ROOT, "deploy/Dockerfile"), "utf8")));
  const index = (keyword: string, test: (args: string) => boolean = () => true): number =>
    stage.findIndex((i) => i.keyword === keyword && test(i.args));

  it("parses continuations and comments into instructions", () => {
    const parsed = parseDockerfile("# c\nFROM a AS b\nRUN x \\\n  # inner\n  && y\nCMD [\"node\"]\n");
    expect(parsed).to.deep.equal([
      { keyword: "FROM", args: "a AS b" },
      { keyword: "RUN", args: "x && y" },
      { keyword: "CMD", args: '["node"]' },
    ]);
  });

  it("runs as the non-root user node", () => {
    const users = stage.filter((i) => i.keyword === "USER").map((i) => i.args);
    expect(users).to.have.length.greaterThan(0);
    expect(users[users.length - 1]).to.equal("node");
  });

  it("creates /data and gives it to node before declaring it a volume, so a fresh volume is writable", () => {
    const volume = index("VOLUME", (a) => a.includes('"/data"') || a.split(/\s+/).includes("/data"));
    const prepare = index("RUN", (a) => /mkdir -p \/data\b/.test(a) && /chown (-R )?node(:node)? \/data\b/.test(a));
    expect(volume, "VOLUME /data").to.be.greaterThan(-1);
    expect(prepare, "RUN mkdir -p /data && chown node:node /data").to.be.greaterThan(-1);
    expect(prepare).to.be.lessThan(volume);
    const env = stage.find((i) => i.keyword === "ENV" && /QM_DATA_DIR=\/data\b/.test(i.args));
    expect(env, "ENV QM_DATA_DIR=/data").to.not.equal(undefined);
  });

  it("starts the server process itself (exec form, no npm or shell) so SIGTERM reaches it", () => {
    expect(index("ENTRYPOINT")).to.equal(-1);
    const cmds = stage.filter((i) => i.keyword === "CMD");
    expect(cmds).to.have.length(1);
    expect(execForm(cmds[0]!.args)).to.deep.equal(["node", "dist/src/main.js"]);
    const stop = stage.find((i) => i.keyword === "STOPSIGNAL");
    expect(stop === undefined || stop.args === "SIGTERM").to.equal(true);
  });

  it("probes health with a script the image contains", () => {
    const health = stage.find((i) => i.keyword === "HEALTHCHECK");
    expect(health, "HEALTHCHECK").to.not.equal(undefined);
    const command = execForm(health!.args.slice(health!.args.indexOf("CMD ") + 4));
    expect(command[0]).to.equal("node");
    const script = command[1] ?? "";
    expect(script).to.match(/^dist\/src\/.+\.js$/);
    expect(existsSync(path.join(REPO_ROOT, script.replace(/^dist\//, "").replace(/\.js$/, ".ts")))).to.equal(true);
    expect(existsSync(path.join(REPO_ROOT, script))).to.equal(true);
  });

  it("copies from the build context only paths that exist", () => {
    for (const copy of stage.filter((i) => i.keyword === "COPY" && !i.args.startsWith("--from"))) {
      const sources = copy.args.split(/\s+/).slice(0, -1);
      for (const source of sources) expect(existsSync(path.join(REPO_ROOT, source)), source).to.equal(true);
    }
  });
});
