// llama.cpp's llama-server as a benchmark peer: find (or build once) the binary, start it on a free
// loopback port, wait until it is healthy, post JSON to it, stop it. Every server started here is
// killed when the process exits or is interrupted.
//
// Plain Node ESM, no dependencies (see README.md); used by llama-spec.mjs and by `tachyon bench
// batch` (types in llama-server.d.mts).

import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, readFileSync, mkdirSync, createWriteStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const HERE = dirname(fileURLToPath(import.meta.url));
export const HOST = '127.0.0.1'; // loopback only, never 0.0.0.0

const children = new Set();

/** SIGKILLs every server still running. */
export function stopAllServers() {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
}

let exitHooksInstalled = false;
function installExitHooks() {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', stopAllServers);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      console.error(`llama-server: ${sig}, stopping servers`);
      stopAllServers();
      process.exit(130);
    });
  }
}

/**
 * The llama-server binary: `server` (or env TACHYON_LLAMA_SERVER) if given, else the one
 * build-llama-cpp.sh builds once into .cache/llama.cpp/<commit>/ (it returns at once when built).
 */
export function locateLlamaServer({ server = process.env.TACHYON_LLAMA_SERVER, log = () => {} } = {}) {
  if (server) {
    if (!existsSync(server)) throw new Error(`llama-server ${server} does not exist`);
    return { path: resolve(server), build: null };
  }
  const script = join(HERE, 'build-llama-cpp.sh');
  log('locating llama-server (builds it once into .cache/llama.cpp/<commit>/ if missing)');
  const r = spawnSync('bash', [script], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`build-llama-cpp.sh failed (exit ${r.status})`);
  const path = r.stdout.trim().split('\n').pop();
  if (!path || !existsSync(path)) throw new Error(`build-llama-cpp.sh did not give a llama-server path (got ${JSON.stringify(path)})`);
  let build = null;
  const info = join(dirname(dirname(dirname(path))), 'build-info.json');
  if (existsSync(info)) {
    try { build = JSON.parse(readFileSync(info, 'utf8')); } catch { /* ignore */ }
  }
  return { path, build };
}

/** `llama-server --help`, checked to be a version with --spec-type. */
export function serverHelp(bin) {
  const r = spawnSync(bin, ['--help'], { encoding: 'utf8', timeout: 30_000, maxBuffer: 16 << 20 });
  const text = `${r.stdout || ''}\n${r.stderr || ''}`;
  if (!/--spec-type/.test(text)) {
    throw new Error(`${bin} --help does not mention --spec-type (exit ${r.status}); too old a llama.cpp?`);
  }
  return text;
}

/** Whether the help text lists this flag. */
export function helpHasFlag(help, flag) {
  return new RegExp(`(^|[\\s,])${flag.replace(/[-]/g, '\\-')}([\\s,=]|$)`, 'm').test(help);
}

/** Names listed after --spec-type in --help, e.g. "--spec-type [none|draft-simple|...]". */
export function parseSpecTypes(help) {
  const line = help.split('\n').find((l) => /(^|\s)--spec-type\s/.test(l));
  if (!line) return [];
  const m = line.match(/--spec-type\s+\[?([A-Za-z0-9_,|\-]+)\]?/);
  if (!m) return [];
  return m[1].split(/[,|]/).map((s) => s.trim()).filter(Boolean);
}

/**
 * The speculative configurations this llama-server offers, each with the flags it adds to the
 * common ones: plain, every ngram-* type, and draft-simple with `-md` when a draft model is given
 * (its threads as the target's, on the CPU; `draftNMax` sets --spec-draft-n-max).
 */
export function specConfigs(help, { draftModel = null, threads, draftNMax = null, log = () => {} }) {
  const types = parseSpecTypes(help);
  const configs = [{ name: 'plain', flags: [] }];
  for (const t of types.filter((t) => t.startsWith('ngram-'))) configs.push({ name: t, flags: ['--spec-type', t] });
  if (draftModel) {
    if (types.includes('draft-simple')) {
      const flags = ['--spec-type', 'draft-simple', '-md', resolve(draftModel), '-td', String(threads), '-tbd', String(threads), '-ngld', '0'];
      if (draftNMax != null) flags.push('--spec-draft-n-max', String(draftNMax));
      configs.push({ name: 'draft-simple', flags });
    } else {
      log('this llama-server has no draft-simple spec type; skipping the draft-model configuration');
    }
  }
  return configs;
}

export function serverVersion(bin) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  return `${r.stdout || ''}${r.stderr || ''}`.split('\n').filter((l) => /version|built with/i.test(l)).join(' | ').trim() || null;
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** One llama-server process. */
export class LlamaServer {
  constructor(bin, name, flags, { log = () => {}, logDir = null, startTimeoutS = 120, requestTimeoutS = 300 } = {}) {
    this.bin = bin;
    this.name = name;
    this.flags = flags;
    this.log = log;
    this.logDir = logDir;
    this.startTimeoutS = startTimeoutS;
    this.requestTimeoutS = requestTimeoutS;
    this.tail = [];
    this.proc = null;
    this.exited = null;
  }

  async start() {
    installExitHooks();
    this.port = await freePort();
    const argv = [...this.flags, '--host', HOST, '--port', String(this.port)];
    this.argv = argv;
    this.log(`[${this.name}] starting: llama-server ${argv.join(' ')}`);
    const proc = spawn(this.bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    children.add(proc);
    let file = null;
    if (this.logDir) {
      mkdirSync(this.logDir, { recursive: true });
      file = createWriteStream(join(this.logDir, `llama-server.${this.name}.log`));
      file.write(`$ ${this.bin} ${argv.join(' ')}\n`);
    }
    const onData = (buf) => {
      if (file) file.write(buf);
      for (const l of buf.toString('utf8').split('\n')) {
        if (!l) continue;
        this.tail.push(l);
        if (this.tail.length > 80) this.tail.shift();
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    this.exitPromise = new Promise((res) => proc.on('exit', (code, signal) => {
      this.exited = { code, signal };
      children.delete(proc);
      if (file) file.end();
      res(this.exited);
    }));
    proc.on('error', (e) => { this.exited = { code: -1, signal: null, error: String(e) }; });

    const deadline = Date.now() + this.startTimeoutS * 1000;
    const t0 = Date.now();
    while (Date.now() < deadline) {
      if (this.exited) throw this.fail(`llama-server exited during start (${JSON.stringify(this.exited)})`);
      try {
        const r = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(2000) });
        if (r.ok) {
          this.log(`[${this.name}] ready on ${this.url} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
          return this;
        }
      } catch { /* not listening yet */ }
      await sleep(200);
    }
    throw this.fail(`llama-server not healthy within ${this.startTimeoutS} s`);
  }

  get url() { return `http://${HOST}:${this.port}`; }

  fail(msg) {
    return new Error(`[${this.name}] ${msg}\n--- last server log lines ---\n${this.tail.slice(-40).join('\n')}`);
  }

  async post(path, body) {
    if (this.exited) throw this.fail(`llama-server is gone (${JSON.stringify(this.exited)})`);
    let r;
    try {
      r = await fetch(`${this.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.requestTimeoutS * 1000),
      });
    } catch (e) {
      throw this.fail(`POST ${path} failed: ${e?.name === 'TimeoutError' ? `timed out after ${this.requestTimeoutS} s` : e}`);
    }
    const text = await r.text();
    if (!r.ok) throw this.fail(`POST ${path}: HTTP ${r.status}: ${text.slice(0, 500)}`);
    return JSON.parse(text);
  }

  async stop() {
    if (!this.proc || this.exited) return;
    this.proc.kill('SIGTERM');
    const done = await Promise.race([this.exitPromise, sleep(5000).then(() => null)]);
    if (!done) {
      this.proc.kill('SIGKILL');
      await Promise.race([this.exitPromise, sleep(5000)]);
    }
  }
}
