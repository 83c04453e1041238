#!/usr/bin/env node
// Peer benchmark: llama.cpp's own speculative decoding (llama-server --spec-type ...) on the same
// prompts Tachyon benchmarks, so `tachyon bench spec` can show both side by side.
//
// Plain Node ESM, no dependencies. See bench/peers/README.md.
//
//   node bench/peers/llama-spec.mjs --model models/testbed/target.gguf \
//     --draft-model models/testbed/draft.gguf \
//     --prompts bench/prompts/longgen.jsonl,bench/prompts/reasoning.jsonl,bench/prompts/rewrite.jsonl \
//     --n 5 --max-tokens 256 --threads 2 --json /tmp/llama-spec.json
//
// For each configuration (plain, every ngram-* --spec-type this llama-server accepts, and
// draft-simple with -md) it starts llama-server on 127.0.0.1 (a free port), waits for /health,
// sends every selected prompt's `chat_prompt` to /completion (greedy, cache_prompt false) and
// records the server's own timings; then stops the server.

import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import {
  HOST, LlamaServer, helpHasFlag, locateLlamaServer, parseSpecTypes, serverHelp, serverVersion, specConfigs, stopAllServers,
} from './llama-server.mjs';

// ---------------------------------------------------------------------------------------------
// arguments

const USAGE = `usage: node bench/peers/llama-spec.mjs --model M [--draft-model D] --prompts A.jsonl[,B.jsonl...]
       [--n 5] [--max-tokens 256] [--threads 2] [--ctx 1024] [--json OUT.json]
       [--configs plain,ngram-mod,...] [--draft-n-max N] [--ignore-eos] [--warmup 1] [--repeats 3]
       [--restart-per-prompt]
       [--server PATH] [--request-timeout-s 300] [--start-timeout-s 120] [--log-dir DIR] [--quiet]

  --model M            target GGUF
  --draft-model D      draft GGUF for the draft-simple configuration (omitted: no draft-simple)
  --prompts F[,F...]   JSONL files; each line needs "chat_prompt" (already chat-formatted text);
                       task name = file basename without .jsonl
  --n N                prompts per file (default 5): the first N, in file order, that fit the context
  --max-tokens K       n_predict per request (default 256)
  --threads T          -t/-tb (and -td/-tbd for the draft) (default 2)
  --ctx C              context size -c (default 1024); prompts with tokens + K > C are skipped
  --json OUT           write the full report here
  --configs LIST       subset of configurations to run (default: all available)
  --draft-n-max N      pass --spec-draft-n-max N to draft-simple (default: llama.cpp's default)
  --ignore-eos         generate exactly K tokens (default: stop at end-of-generation)
  --warmup W           untimed warm-up requests per server (default 1, 8 tokens, fixed text)
  --repeats R          rounds (default 3); each round starts a fresh server per configuration and
                       runs every prompt once; per prompt the median tok/s over rounds is used
  --restart-per-prompt a fresh server for every prompt: no drafter state (ngram-mod's hash table,
                       ngram-cache's context cache) carries over from earlier prompts
  --server PATH        llama-server binary (default: build/reuse .cache/llama.cpp/<commit>/ via
                       bench/peers/build-llama-cpp.sh); env TACHYON_LLAMA_SERVER also works
  --log-dir DIR        keep each server's full log there (default: only the tail, shown on errors)
  --list               only print the spec types this llama-server accepts, then exit`;

function parseArgs(argv) {
  const a = {
    model: null, draftModel: null, prompts: null, n: 5, maxTokens: 256, threads: 2, ctx: 1024,
    json: null, configs: null, draftNMax: null, ignoreEos: false, warmup: 1, server: process.env.TACHYON_LLAMA_SERVER || null,
    requestTimeoutS: 300, startTimeoutS: 120, repeats: 3, restartPerPrompt: false, logDir: null, quiet: false, list: false,
  };
  const int = (name, v, min = 0) => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < min) die(`${name}: expected an integer >= ${min}, got ${JSON.stringify(v)}`);
    return x;
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) die(`${k} needs a value`);
      return argv[++i];
    };
    switch (k) {
      case '--model': case '-m': a.model = v(); break;
      case '--draft-model': case '-md': a.draftModel = v(); break;
      case '--prompts': a.prompts = v().split(',').filter(Boolean); break;
      case '--n': a.n = int(k, v(), 1); break;
      case '--max-tokens': a.maxTokens = int(k, v(), 1); break;
      case '--threads': a.threads = int(k, v(), 1); break;
      case '--ctx': a.ctx = int(k, v(), 16); break;
      case '--json': a.json = v(); break;
      case '--configs': a.configs = v().split(',').filter(Boolean); break;
      case '--draft-n-max': a.draftNMax = int(k, v(), 0); break;
      case '--ignore-eos': a.ignoreEos = true; break;
      case '--warmup': a.warmup = int(k, v(), 0); break;
      case '--repeats': a.repeats = int(k, v(), 1); break;
      case '--restart-per-prompt': a.restartPerPrompt = true; break;
      case '--server': a.server = v(); break;
      case '--request-timeout-s': a.requestTimeoutS = int(k, v(), 1); break;
      case '--start-timeout-s': a.startTimeoutS = int(k, v(), 1); break;
      case '--log-dir': a.logDir = v(); break;
      case '--quiet': a.quiet = true; break;
      case '--list': a.list = true; break;
      case '-h': case '--help': console.log(USAGE); process.exit(0); break;
      default: die(`unknown argument: ${k}\n${USAGE}`);
    }
  }
  if (!a.list) {
    if (!a.model) die(`--model is required\n${USAGE}`);
    if (!a.prompts?.length) die(`--prompts is required\n${USAGE}`);
  }
  return a;
}

function die(msg) {
  console.error(`llama-spec: ${msg}`);
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const log = (...m) => { if (!args.quiet) console.error('[llama-spec]', ...m); };

// ---------------------------------------------------------------------------------------------
// every server started is stopped on exit and on signals (llama-server.mjs); also on a crash

process.on('uncaughtException', (e) => {
  console.error('llama-spec: fatal:', e?.stack || e);
  stopAllServers();
  process.exit(1);
});
process.on('unhandledRejection', (e) => {
  console.error('llama-spec: fatal:', e?.stack || e);
  stopAllServers();
  process.exit(1);
});

// ---------------------------------------------------------------------------------------------
// prompts

function readJsonl(file) {
  const out = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.forEach((l, i) => {
    if (!l.trim()) return;
    let o;
    try { o = JSON.parse(l); } catch (e) { die(`${file}:${i + 1}: bad JSON: ${e.message}`); }
    if (typeof o.chat_prompt !== 'string') die(`${file}:${i + 1}: no "chat_prompt" string field`);
    out.push({ id: o.id ?? `${basename(file)}#${i + 1}`, chat_prompt: o.chat_prompt });
  });
  return out;
}

const taskName = (file) => basename(file).replace(/\.jsonl$/i, '');

// ---------------------------------------------------------------------------------------------
// statistics

function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
const round3 = (x) => round(x, 3);
const round = (x, d = 3) => (x == null || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d);

// ---------------------------------------------------------------------------------------------
// main

let located;
try {
  located = locateLlamaServer({ server: args.server, log });
} catch (e) {
  die(e.message);
}
const { path: serverBin, build } = located;
const help = serverHelp(serverBin);
const specTypes = parseSpecTypes(help);
const version = serverVersion(serverBin);
log(`llama-server: ${serverBin}`);
log(`version: ${version}`);
log(`--spec-type accepts: ${specTypes.join(', ') || '(none found)'}`);
if (args.list) {
  console.log(JSON.stringify({ server: serverBin, version, spec_types: specTypes }, null, 2));
  process.exit(0);
}
const hasFlag = (f) => helpHasFlag(help, f);

for (const f of [args.model, args.draftModel, ...args.prompts].filter(Boolean)) {
  if (!existsSync(f)) die(`no such file: ${f}`);
}

// common flags for every configuration
const common = [
  '-m', resolve(args.model),
  '-c', String(args.ctx),
  '-np', '1', // one slot, the whole context for it
  '-t', String(args.threads), '-tb', String(args.threads),
  '-ngl', '0', // CPU (the build has no GPU backend anyway)
];
if (hasFlag('--no-webui')) common.push('--no-webui');
if (hasFlag('--cache-ram')) common.push('--cache-ram', '0'); // no host-memory prompt cache between requests

const configs = specConfigs(help, { draftModel: args.draftModel, threads: args.threads, draftNMax: args.draftNMax, log });
let runConfigs = configs;
if (args.configs) {
  const unknown = args.configs.filter((c) => !configs.some((x) => x.name === c));
  if (unknown.length) die(`--configs: unknown/unavailable ${unknown.join(', ')} (available: ${configs.map((c) => c.name).join(', ')})`);
  runConfigs = configs.filter((c) => args.configs.includes(c.name));
  if (!runConfigs.some((c) => c.name === 'plain')) {
    log('note: "plain" not in --configs, so speedup_vs_plain and identical_rate are null');
  }
}

const serverOptions = { log, logDir: args.logDir, startTimeoutS: args.startTimeoutS, requestTimeoutS: args.requestTimeoutS };
const tasks = args.prompts.map((f) => ({ file: f, name: taskName(f), all: readJsonl(f) }));

const report = {
  tool: 'tachyon bench/peers/llama-spec.mjs',
  created: new Date().toISOString(),
  llama_cpp: { server: serverBin, version, build, spec_types: specTypes },
  settings: {
    model: resolve(args.model), draft_model: args.draftModel ? resolve(args.draftModel) : null,
    ctx: args.ctx, n: args.n, max_tokens: args.maxTokens, threads: args.threads,
    ignore_eos: args.ignoreEos, warmup: args.warmup, repeats: args.repeats, restart_per_prompt: args.restartPerPrompt, host: HOST,
    request: { temperature: 0, cache_prompt: false, n_predict: args.maxTokens, ignore_eos: args.ignoreEos },
    common_flags: common.map((x) => (x === resolve(args.model) ? '<model>' : x)),
  },
  prompts: {},
  configs: {},
};

const completionBody = (prompt, nPredict) => ({
  prompt,
  n_predict: nPredict,
  temperature: 0, // greedy
  cache_prompt: false,
  return_tokens: true,
  stream: false,
  seed: 0,
  ignore_eos: args.ignoreEos,
});

const tStart = Date.now();

// --- 1. select the prompts once, with a short-lived plain server: the first N per file whose
// token count (BOS included, exactly as the server tokenizes /completion prompts) plus
// max-tokens fits the context.
{
  const server = new LlamaServer(serverBin, 'select', common, serverOptions);
  try {
    await server.start();
    for (const t of tasks) {
      const selected = [];
      const skipped = [];
      for (const p of t.all) {
        if (selected.length >= args.n) break;
        const { tokens } = await server.post('/tokenize', { content: p.chat_prompt, add_special: true, parse_special: true });
        const n = tokens.length;
        if (n + args.maxTokens > args.ctx) skipped.push({ id: p.id, prompt_tokens: n });
        else selected.push({ ...p, prompt_tokens: n, first_token: tokens[0] });
      }
      t.selected = selected;
      report.prompts[t.name] = {
        file: t.file,
        selected: selected.map((p) => ({ id: p.id, prompt_tokens: p.prompt_tokens })),
        skipped_too_long: skipped,
        n_skipped: skipped.length,
      };
      log(`task ${t.name}: ${selected.length} prompts selected, ${skipped.length} skipped (prompt tokens + ${args.maxTokens} > ${args.ctx})`);
      if (selected.length < args.n) log(`warning: task ${t.name}: only ${selected.length}/${args.n} prompts fit`);
    }
    const bos = await server.post('/tokenize', { content: '', add_special: true, parse_special: true });
    report.settings.bos_added = Array.isArray(bos.tokens) && bos.tokens.length > 0;
    report.settings.bos_token = bos.tokens?.[0] ?? null;
  } finally {
    await server.stop();
  }
}

// --- 2. rounds: every round starts a FRESH server per configuration (so the stateful ngram
// drafters, whose tables live as long as the server, see exactly one pass over the prompts, in
// file order) and runs every selected prompt once; with --restart-per-prompt every prompt gets a
// fresh server (drafter state never carries from one prompt to the next). Configurations are
// rotated between rounds so that slow phases of a noisy machine do not always hit the same one.
const runs = {}; // runs[cfg][task][id] = [run, ...]
const failed = {};

async function runOne(server, cfg, t, p, rnd) {
  const t0 = performance.now();
  const r = await server.post('/completion', completionBody(p.chat_prompt, args.maxTokens));
  const wallMs = performance.now() - t0;
  const tm = r.timings || {};
  const promptN = r.tokens_evaluated ?? tm.prompt_n ?? null;
  if (promptN != null && promptN !== p.prompt_tokens) {
    log(`warning: ${cfg.name}/${t.name}/${p.id}: server evaluated ${promptN} prompt tokens, /tokenize (add_special) gave ${p.prompt_tokens}`);
  }
  const run = {
    round: rnd,
    prompt_tokens: promptN,
    predicted_n: tm.predicted_n ?? r.tokens_predicted ?? null,
    predicted_ms: round3(tm.predicted_ms),
    predicted_per_second: round3(tm.predicted_per_second),
    prompt_ms: round3(tm.prompt_ms),
    draft_n: tm.draft_n ?? 0,
    draft_n_accepted: tm.draft_n_accepted ?? 0,
    wall_ms: round3(wallMs),
    stop_type: r.stop_type ?? null,
    text: r.content,
    tokens: Array.isArray(r.tokens) ? r.tokens : null,
  };
  ((runs[cfg.name] ??= {})[t.name] ??= {})[p.id] ??= [];
  runs[cfg.name][t.name][p.id].push(run);
  const acc = run.draft_n ? ` draft ${run.draft_n_accepted}/${run.draft_n}` : '';
  log(`[round ${rnd + 1}/${args.repeats}] [${cfg.name}] ${t.name}/${p.id}: ${run.predicted_n} tok, ${run.predicted_per_second} tok/s${acc}`);
}

// one server session: start, warm up, run the given (task, prompt) pairs, stop
async function session(cfg, items, rnd) {
  const server = new LlamaServer(serverBin, cfg.name, [...common, ...cfg.flags], serverOptions);
  try {
    await server.start();
    for (let w = 0; w < args.warmup; w++) {
      await server.post('/completion', { ...completionBody('Hello.', 8), ignore_eos: false });
    }
    for (const [t, p] of items) await runOne(server, cfg, t, p, rnd);
  } finally {
    await server.stop();
  }
}

const allItems = tasks.flatMap((t) => t.selected.map((p) => [t, p]));
for (let rnd = 0; rnd < args.repeats; rnd++) {
  const order = runConfigs.map((_, i) => runConfigs[(i + rnd) % runConfigs.length]);
  for (const cfg of order) {
    if (failed[cfg.name]) continue;
    try {
      if (args.restartPerPrompt) {
        for (const item of allItems) await session(cfg, [item], rnd);
      } else {
        await session(cfg, allItems, rnd);
      }
    } catch (e) {
      failed[cfg.name] = String(e?.message || e);
      console.error(`llama-spec: configuration ${cfg.name} failed:\n${failed[cfg.name]}`);
      if (cfg.name === 'plain') throw new Error('the plain configuration failed; nothing to compare against');
    }
  }
}

// --- 3. aggregate: per prompt, the median over rounds; per task, the median over prompts.
for (const cfg of runConfigs) {
  const cfgOut = {
    flags: cfg.flags.map((x) => (args.draftModel && x === resolve(args.draftModel) ? '<draft>' : x)),
    perTask: {},
  };
  report.configs[cfg.name] = cfgOut;
  if (failed[cfg.name]) cfgOut.error = failed[cfg.name];
  for (const t of tasks) {
    const samples = [];
    for (const p of t.selected) {
      const rs = runs[cfg.name]?.[t.name]?.[p.id];
      if (!rs?.length) continue;
      const ref = runs.plain?.[t.name]?.[p.id]?.[0];
      const first = rs[0];
      const tps = median(rs.map((r) => r.predicted_per_second));
      const refRuns = runs.plain?.[t.name]?.[p.id];
      const refTps = refRuns ? median(refRuns.map((r) => r.predicted_per_second)) : null;
      // noise on a shared machine only ever slows a run down, so the best run is a second,
      // less noisy estimate of each prompt's speed
      const best = Math.max(...rs.map((r) => r.predicted_per_second ?? -Infinity));
      const refBest = refRuns ? Math.max(...refRuns.map((r) => r.predicted_per_second ?? -Infinity)) : null;
      const s = {
        id: p.id,
        prompt_tokens: first.prompt_tokens,
        predicted_n: first.predicted_n,
        predicted_per_second: round3(tps),
        best_per_second: round3(best),
        predicted_per_second_runs: rs.map((r) => r.predicted_per_second),
        draft_n: cfg.name === 'plain' ? null : first.draft_n,
        draft_n_accepted: cfg.name === 'plain' ? null : first.draft_n_accepted,
        draft_stats_runs: cfg.name === 'plain' ? undefined : rs.map((r) => [r.draft_n_accepted, r.draft_n]),
        stop_type: first.stop_type,
        deterministic_across_runs: rs.every((r) => r.text === first.text),
        identical_to_plain: ref ? rs.every((r) => r.text === ref.text) : null,
        tokens_identical_to_plain: ref && first.tokens && ref.tokens ? rs.every((r) => JSON.stringify(r.tokens) === JSON.stringify(ref.tokens)) : null,
        speedup_vs_plain: refTps > 0 && tps != null ? round3(tps / refTps) : null,
        speedup_vs_plain_best: refBest > 0 && best > 0 ? round3(best / refBest) : null,
        // deterministic: tokens produced per target decode call (1 + accepted drafts per call)
        tokens_per_target_call: first.predicted_n > 0 ? round3(first.predicted_n / (first.predicted_n - (cfg.name === 'plain' ? 0 : first.draft_n_accepted))) : null,
        wall_ms_runs: rs.map((r) => r.wall_ms),
        text: first.text,
        tokens: first.tokens,
      };
      if (ref && s.identical_to_plain === false && first.tokens && ref.tokens) {
        let i = 0;
        while (i < first.tokens.length && i < ref.tokens.length && first.tokens[i] === ref.tokens[i]) i++;
        s.first_diff_token = i;
      }
      samples.push(s);
    }
    if (!samples.length) continue;
    const dn = samples.reduce((a, s) => a + (s.draft_n || 0), 0);
    const da = samples.reduce((a, s) => a + (s.draft_n_accepted || 0), 0);
    const withRef = samples.filter((s) => s.identical_to_plain != null);
    cfgOut.perTask[t.name] = {
      n: samples.length,
      median_tps: round3(median(samples.map((s) => s.predicted_per_second))),
      speedup_vs_plain: cfg.name === 'plain' ? 1 : round3(median(samples.map((s) => s.speedup_vs_plain).filter((x) => x != null))),
      median_best_tps: round3(median(samples.map((s) => s.best_per_second))),
      speedup_vs_plain_best: cfg.name === 'plain' ? 1 : round3(median(samples.map((s) => s.speedup_vs_plain_best).filter((x) => x != null))),
      tokens_per_target_call: (() => {
        const n = samples.reduce((a, s) => a + (s.predicted_n || 0), 0);
        const acc = cfg.name === 'plain' ? 0 : samples.reduce((a, s) => a + (s.draft_n_accepted || 0), 0);
        return n > acc ? round3(n / (n - acc)) : null;
      })(),
      identical_rate: withRef.length ? round3(withRef.filter((s) => s.identical_to_plain).length / withRef.length) : null,
      acceptance: cfg.name === 'plain' ? null : dn > 0 ? round3(da / dn) : null,
      draft_n: cfg.name === 'plain' ? null : dn,
      draft_n_accepted: cfg.name === 'plain' ? null : da,
      median_predicted_n: median(samples.map((s) => s.predicted_n)),
      samples,
    };
  }
}
report.elapsed_s = round((Date.now() - tStart) / 1000, 1);

// ---------------------------------------------------------------------------------------------
// summary table (stdout) and JSON

const taskNames = tasks.map((t) => t.name);
const rows = [];
const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);
const cols = [
  ['config', 14, 'l'], ['task', 10, 'l'], ['n', 3], ['median tok/s', 13], ['x plain', 8], ['best tok/s', 11], ['x plain', 8],
  ['tok/call', 9], ['accept', 7], ['same', 6],
];
const fmtRow = (cells) => cells.map((c, i) => (cols[i][2] === 'l' ? pad(c, cols[i][1]) : lpad(c, cols[i][1]))).join(' ');
const head = fmtRow(cols.map((c) => c[0]));
rows.push(head, '-'.repeat(head.length));
const f = (x, d) => (x == null ? '-' : x.toFixed(d));
for (const [name, c] of Object.entries(report.configs)) {
  if (c.error && !Object.keys(c.perTask).length) { rows.push(`${pad(name, 14)} FAILED: ${c.error.split('\n')[0]}`); continue; }
  if (c.error) rows.push(`(${name} failed in a later round; partial data: ${c.error.split('\n')[0]})`);
  for (const t of taskNames) {
    const r = c.perTask[t];
    if (!r) continue;
    rows.push(fmtRow([name, t, r.n, f(r.median_tps, 1), f(r.speedup_vs_plain, 2), f(r.median_best_tps, 1), f(r.speedup_vs_plain_best, 2),
      f(r.tokens_per_target_call, 2), f(r.acceptance, 2), f(r.identical_rate, 2)]));
  }
}
rows.push('median/best tok/s: per prompt the median/best over rounds, then the median over prompts; x plain: median over',
  'prompts of the per-prompt ratio; tok/call: generated tokens per target decode call; accept: accepted/drafted;',
  'same: share of prompts whose text is identical to plain (every round).');
console.log(rows.join('\n'));
for (const t of taskNames) {
  const p = report.prompts[t];
  if (p?.n_skipped) console.log(`${t}: ${p.n_skipped} prompt(s) skipped (prompt + ${args.maxTokens} tokens > ctx ${args.ctx})`);
}

if (args.json) {
  mkdirSync(dirname(resolve(args.json)), { recursive: true });
  writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
  log(`wrote ${args.json}`);
}
