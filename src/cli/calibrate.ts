/** `tachyon calibrate reasoning`: fits the model's early-exit presets on the calibration half of a prompt set. */
import { basename, isAbsolute, relative } from 'node:path';
import { packageRoot } from '../paths.js';
import type { Command } from 'commander';
import { Engine } from '../engine/engine.js';
import { readReasoningItems } from '../bench/reasoning.js';
import { evaluatePolicy, fitLevels, measuredProbeCost, oracleExit, promptHalf, traceThinking, type ThinkingTrace } from '../reasoning/calibrate.js';
import { REASONING_EFFORTS } from '../reasoning/controller.js';
import { presetFingerprint, presetsDir, saveReasoningPresets } from '../reasoning/presets.js';
import { defaultReasoningPrompts } from '../bench/reasoning.js';
import { addModelFlags, engineOptions, modelPair, shapeOption, type ModelFlags, type PairFlags } from './engine-options.js';
import { integer } from './options.js';
import { counter } from './progress.js';

interface CalibrateFlags extends ModelFlags, Pick<PairFlags, 'shape'> {
  prompts: string;
  n?: number;
  maxTokens: number;
  out: string;
  json?: boolean;
}

export function registerCalibrate(program: Command): void {
  const calibrate = program.command('calibrate').description('fit per-model settings on a calibration set');
  const command = calibrate
    .command('reasoning')
    .description('fit the reasoning-effort presets (low/medium/high early exit) on the calibration half (odd lines) of a prompt set');
  addModelFlags(command)
    .addOption(shapeOption())
    .option('--prompts <file>', 'JSONL with "prompt" (or "chat_prompt") and "answer"; the odd (0-based) lines are used, the even ones are left for evaluation', defaultReasoningPrompts)
    .option('-n, --n <count>', 'use only the first N prompts of the calibration half', integer(1))
    .option('--max-tokens <n>', 'most tokens per full-thinking generation', integer(1), 900)
    .option('--out <dir>', 'where the presets are written (the engine looks in the default)', presetsDir)
    .option('--json', 'print the fitted presets as JSON')
    .action(async (flags: CalibrateFlags) => {
      const items = promptHalf(await readReasoningItems(flags.prompts), 'calibration').slice(0, flags.n);
      if (items.length === 0) throw new Error(`${flags.prompts}: no calibration prompts`);
      const { model } = await modelPair({ ...flags, draft: false }, (line) => process.stderr.write(`calibrate: ${line}\n`));
      const engine = await Engine.load(engineOptions({ ...flags, model }));
      const traces: ThinkingTrace[] = [];
      let probeDecodes: number;
      try {
        const progress = counter('calibrating', items.length);
        for (const item of items) {
          traces.push(await traceThinking(engine, await engine.userPrompt(item.prompt), flags.maxTokens));
          progress.tick(item.id);
        }
        progress.stop();
        probeDecodes = await measuredProbeCost(engine, items.map((item) => String(item.answer)));
      } finally {
        await engine.dispose();
      }
      const answers = items.map((item) => item.answer);
      const fitted = fitLevels(traces, answers, probeDecodes);
      const oracle = evaluatePolicy(traces, answers, oracleExit);
      const presets = {
        fingerprint: await presetFingerprint(model),
        model: basename(model),
        levels: { low: fitted.levels.low.thresholds, medium: fitted.levels.medium.thresholds, high: fitted.levels.high.thresholds },
        calibration: {
          prompts: shownPath(flags.prompts),
          half: 'calibration (odd 0-based lines)',
          n: items.length,
          full: fitted.full,
          probe_cost_decodes: probeDecodes,
          oracle,
          replayed: Object.fromEntries(REASONING_EFFORTS.map((level) => [level, fitted.levels[level].outcome])),
        },
      };
      const file = await saveReasoningPresets(presets, flags.out);
      if (flags.json) process.stdout.write(`${JSON.stringify(presets, (_k, v) => (v === Infinity ? null : v))}\n`);
      else {
        process.stdout.write(`full thinking: accuracy ${(fitted.full.accuracy * 100).toFixed(1)}%, ${fitted.full.thinkingTokens.toFixed(1)} thinking tokens (n = ${items.length})\n`);
        process.stdout.write(`answer probe:  ${probeDecodes.toFixed(2)} decodes on a plain step (this model's cost curve)\n`);
        process.stdout.write(`oracle exit:   accuracy ${(oracle.accuracy * 100).toFixed(1)}%, ${oracle.thinkingTokens.toFixed(1)} thinking tokens\n`);
        for (const level of REASONING_EFFORTS) {
          const { thresholds, outcome } = fitted.levels[level];
          const probes = outcome.probes > 0 ? `, ${outcome.probes.toFixed(1)} probes` : '';
          process.stdout.write(`${level.padEnd(6)} accuracy ${(outcome.accuracy * 100).toFixed(1)}%, ${outcome.thinkingTokens.toFixed(1)} thinking tokens${probes} · ${JSON.stringify(thresholds)}\n`);
        }
        process.stdout.write(`presets written to ${file}\n`);
      }
    });
}

/** A path inside the package as relative to it (shipped presets name no machine's directories), others as given. */
function shownPath(path: string): string {
  const inside = relative(packageRoot, path);
  return inside && !inside.startsWith('..') && !isAbsolute(inside) ? inside : path;
}
