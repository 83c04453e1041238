/**
 * Per-engine speculation: owns the drafters that outlive a request (the suffix history, the draft
 * model's context), the measured cost curve and the running acceptance statistics, and builds the
 * decoder each request asks for.
 */
import type { Context } from '../llama/context.js';
import { PlainDecoder, type Decoder } from '../generate/decoder.js';
import type { Sampler } from '../generate/sampling.js';
import { costCurveFor, type MeasuredCostCurve } from './cost-curve.js';
import { SpeculativeDecoder } from './decoder.js';
import { DraftModelDrafter } from './draft-model.js';
import { NgramDrafter } from './ngram.js';
import { AdaptivePlanner } from './planner.js';
import { SuffixDrafter } from './suffix.js';
import type { Drafter } from './tree.js';

export const SPECULATION_MODES = ['auto', 'ngram', 'suffix', 'draft', 'off'] as const;
export type SpeculationMode = (typeof SPECULATION_MODES)[number];

export interface SpeculationOptions {
  /** The target's context; its sequence count bounds the branches of a tree. */
  target: Context;
  /** Threads the target decodes with (part of the cost-curve cache key). */
  threads: number;
  /** A draft model's context (same vocabulary as the target). */
  draft?: Context;
  /** Called before the one-time cost-curve measurement (it takes a few seconds). */
  onMeasure?: () => void;
}

export class Speculation {
  /**
   * Earlier outputs, kept across requests: repeated answers become cheap to draft. One history
   * per mode, so a configuration never drafts from what another configuration just generated
   * (benchmarks compare modes on the same prompts).
   */
  private readonly suffixes = new Map<SpeculationMode, SuffixDrafter>();
  private readonly planners = new Map<string, AdaptivePlanner>();
  private costCurve: MeasuredCostCurve | undefined;

  constructor(private readonly options: SpeculationOptions) {}

  /** The decoder for one request. `auto` uses every drafter available and lets the planner decide. */
  async decoder(mode: SpeculationMode, sampler: Sampler): Promise<Decoder> {
    const { target } = this.options;
    if (mode === 'off') return new PlainDecoder(target, sampler);
    if (mode === 'draft' && !this.options.draft) throw new Error('speculation mode "draft" needs a draft model (--draft-model PATH)');
    const drafters = this.drafters(mode, sampler);
    const planner = await this.planner(mode, sampler);
    return new SpeculativeDecoder(target, sampler, { drafters, planner });
  }

  /** The measured cost curve of the target on this machine (measured once, then cached on disk). */
  async measuredCostCurve(): Promise<MeasuredCostCurve> {
    this.costCurve ??= await costCurveFor(this.options.target, this.options.threads, this.options.onMeasure);
    return this.costCurve;
  }

  private drafters(mode: SpeculationMode, sampler: Sampler): Drafter[] {
    const drafters: Drafter[] = [];
    if (mode === 'auto' || mode === 'ngram') drafters.push(new NgramDrafter());
    if (mode === 'auto' || mode === 'suffix') drafters.push(this.suffixHistory(mode));
    if ((mode === 'auto' || mode === 'draft') && this.options.draft) {
      drafters.push(new DraftModelDrafter(this.options.draft, sampler.options, { seed: sampler.options.seed ^ 0x9e3779b9 }));
    }
    return drafters;
  }

  private suffixHistory(mode: SpeculationMode): SuffixDrafter {
    let suffix = this.suffixes.get(mode);
    if (!suffix) {
      suffix = new SuffixDrafter();
      this.suffixes.set(mode, suffix);
    }
    return suffix;
  }

  /** Acceptance statistics are kept per mode and sampling regime across requests. */
  private async planner(mode: SpeculationMode, sampler: Sampler): Promise<AdaptivePlanner> {
    const key = `${mode}:${sampler.options.temperature > 0 ? 'sampled' : 'greedy'}`;
    let planner = this.planners.get(key);
    if (!planner) {
      const { curve } = await this.measuredCostCurve();
      planner = new AdaptivePlanner({ curve });
      this.planners.set(key, planner);
    }
    return planner;
  }
}
