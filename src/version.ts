// The package version, for the start-up log line and qm_build_info. Read from
// package.json at the repository (or image) root, from src/ or dist/src/.

import { readFileSync } from "node:fs";
import path from "node:path";

const ROOT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? "../.." : "..");

function readVersion(): string {
  try {
    const pkg: unknown = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8"));
    if (typeof pkg === "object" && pkg !== null && "version" in pkg && typeof pkg.version === "string") return pkg.version;
  } catch {
    // A tree without package.json still runs; its version is unknown.
  }
  return "unknown";
}

export const VERSION = readVersion();
