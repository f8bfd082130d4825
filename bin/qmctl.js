#!/usr/bin/env node
// qmctl is written in TypeScript and compiled to dist/; this shim only starts it.
"use strict";
const path = require("node:path");
const entry = path.join(__dirname, "../dist/src/cli/qmctl.js");
let cli;
try {
  cli = require(entry);
} catch (err) {
  // A checkout that was never built is the common case; say how to fix it instead of printing a stack.
  if (err && err.code === "MODULE_NOT_FOUND" && String(err.message).includes(entry)) {
    process.stderr.write(`qmctl: ${entry} is missing; build first (npm run build)\n`);
    process.exit(1);
  }
  throw err;
}
cli.main(process.argv.slice(2));
