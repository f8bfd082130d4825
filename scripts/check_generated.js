#!/usr/bin/env node
// Fails when src/gen is not what `npm run gen` makes from proto/ today, so the
// committed generated code can never drift from the API definition.
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const out = fs.mkdtempSync(path.join(os.tmpdir(), "qm-gen-"));
try {
  execFileSync(path.join(root, "node_modules/.bin/buf"), ["generate", "--output", out], { cwd: root, stdio: "inherit" });
  const diff = (a, b) => {
    const names = new Set([...fs.readdirSync(a), ...fs.readdirSync(b)]);
    const differing = [];
    for (const name of names) {
      const pa = path.join(a, name);
      const pb = path.join(b, name);
      if (!fs.existsSync(pa) || !fs.existsSync(pb)) differing.push(path.relative(root, pb));
      else if (fs.statSync(pa).isDirectory()) differing.push(...diff(pa, pb));
      else if (!fs.readFileSync(pa).equals(fs.readFileSync(pb))) differing.push(path.relative(root, pb));
    }
    return differing;
  };
  const stale = diff(path.join(out, "src/gen"), path.join(root, "src/gen"));
  if (stale.length > 0) {
    console.error(`src/gen is stale; run \`npm run gen\` and commit. Differs: ${stale.join(", ")}`);
    process.exit(1);
  }
  console.log("src/gen matches proto/");
} finally {
  fs.rmSync(out, { recursive: true, force: true });
}
