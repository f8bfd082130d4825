#!/usr/bin/env node
// `npm start` runs this before the server. It builds only when dist/ is
// missing or older than the sources, so a fresh clone (`npm ci && npm start`)
// still builds, while a built tree installed without dev dependencies (no
// TypeScript compiler) starts as it is. The compiler's output goes to stderr:
// the server's stdout carries nothing but JSON log lines.
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const entry = path.join(root, "dist/src/main.js");
const tsc = path.join(root, "node_modules/typescript/bin/tsc");

function newestMtimeMs(dir) {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtimeMs(full));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, fs.statSync(full).mtimeMs);
  }
  return newest;
}

function mtimeMs(file) {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

const builtMs = mtimeMs(entry);
const sourcesMs = fs.existsSync(path.join(root, "src"))
  ? Math.max(newestMtimeMs(path.join(root, "src")), mtimeMs(path.join(root, "tsconfig.json")) ?? 0)
  : 0;
if (builtMs !== undefined && builtMs >= sourcesMs) process.exit(0);

if (!fs.existsSync(tsc)) {
  if (builtMs !== undefined) {
    // A production install may carry sources whose timestamps say newer; the
    // build it ships with is what it has.
    process.stderr.write("quartermaster: dist/ is older than src/ and no TypeScript compiler is installed; starting the existing build\n");
    process.exit(0);
  }
  process.stderr.write("quartermaster: dist/ is missing and no TypeScript compiler is installed: run `npm ci && npm run build`\n");
  process.exit(1);
}

process.stderr.write(`quartermaster: ${builtMs === undefined ? "dist/ is missing" : "src/ changed"}; building\n`);
fs.rmSync(path.join(root, "dist"), { recursive: true, force: true });
// stdout of the compiler goes to our stderr (fd 2).
const result = spawnSync(process.execPath, [tsc, "-p", root], { cwd: root, stdio: ["ignore", 2, 2] });
process.exit(result.status ?? 1);
