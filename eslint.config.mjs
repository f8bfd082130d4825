// `npm run lint` (part of `npm test`): the house-style rules a compiler does
// not check — no floating or misused promises, no `any` — with type
// information, over src/, test/ and bench/. Generated code (src/gen) is not ours.
//
// The project compiles with TypeScript 7, the native compiler, which has no
// JavaScript compiler API. typescript-eslint needs that API, so it gets the
// last classic TypeScript, installed as `typescript-classic` (package.json
// overrides its peer range to accept the 7 that `npm ci` puts at the root):
// every require("typescript") made while linting is resolved to it here.
import Module from "node:module";

const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  const classic = request === "typescript" || request.startsWith("typescript/");
  return resolveFilename.call(this, classic ? `typescript-classic${request.slice("typescript".length)}` : request, ...rest);
};

const { default: tseslint } = await import("typescript-eslint");

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "src/gen/**", "**/*.js", "**/*.mjs", "**/*.cjs"] },
  {
    files: ["**/*.ts"],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "@typescript-eslint": tseslint.plugin },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-explicit-any": "error",
    },
  },
);
