/**
 * Per-engine speculation: owns the drafters that outlive a request (the suffix history, the draft
 * model's context), the measured cost curve and the running acceptance statistics, and builds the
 * decoder each request asks for.
 */
import type { Context } from '../llama/context.js';
import { PlainDecoder, type SequenceDecoder } from '../generate/decoder.js';
import type { Sampler } from '../generate/sampling.js';
import { costCurveFor, type MeasuredCostCurve } from './cost-curve.js';
import { SpeculativeDecoder } from './decoder.js';
import { DraftModelDrafter } from './draft-model.js';
import { NgramDrafter } from './ngram.js';
import { AdaptivePlanner, FixedPlanner } from './planner.js';
import type { TreePlanner } from './decoder.js';
import { SuffixDrafter } from './suffix.js';
import type { DraftBudget, Drafter } from './tree.js';

export const SPECULATION_MODES = ['auto', 'ngram', 'suffix', 'draft', 'off'] as const;
export type SpeculationMode = (typeof SPECULATION_MODES)[number];

export interface SpeculationOptions {
  /** The target's context. */
  target: Context;
  /** Threads the target decodes with (part of the cost-curve cache key). */
  threads: number;
  /** A draft model's context (same vocabulary as the target). */
  draft?: Context;
  /** Called before the one-time cost-curve measurement (it takes a few seconds). */
  onMeasure?: () => void;
  /** Verify every draft within this budget (FixedPlanner) instead of the adaptive planner. */
  fixedBudget?: DraftBudget;
}

export class Speculation {
  /**
   * Earlier outputs, kept across requests: repeated answers become cheap to draft. One history
   * per mode, so a configuration never drafts from what another configuration just generated
   * (benchmarks compare modes on the same prompts).
   */
  private readonly suffixes = new Map<string, SuffixDrafter>();
  /** Shared histories now serving a request (a history follows one request at a time). */
  private readonly lentSuffixes = new Set<Drafter>();
  private readonly planners = new Map<string, AdaptivePlanner>();
  private costCurve: Promise<MeasuredCostCurve> | undefined;

  constructor(private readonly options: SpeculationOptions) {}

  /** Checks a mode can run on this engine (before a request is queued). */
  check(mode: SpeculationMode): void {
    if (mode === 'draft' && !this.options.draft) throw new Error('speculation mode "draft" needs a draft model (--draft-model PATH)');
  }

  /**
   * The decoder for one request, whose KV lives in sequence `seq` (empty now: the first
   * speculative request measures the cost curve there). `auto` uses every drafter available and
   * lets the planner decide.
   */
  async decoder(mode: SpeculationMode, sampler: Sampler, seq: number, salt = ''): Promise<SequenceDecoder> {
    this.check(mode);
    if (mode === 'off') return new PlainDecoder(sampler);
    const planner = await this.planner(mode, sampler, seq);
    const drafters = this.drafters(mode, sampler, seq, salt);
    return new SpeculativeDecoder(sampler, { drafters, planner, onDispose: () => drafters.forEach((drafter) => this.lentSuffixes.delete(drafter)) });
  }

  /** The measured cost curve of the target on this machine (measured once in `seq`, then cached on disk). */
  measuredCostCurve(seq: number): Promise<MeasuredCostCurve> {
    // The promise is kept, so that a second caller during the measurement waits for it instead of measuring again.
    this.costCurve ??= costCurveFor(this.options.target, seq, this.options.threads, this.options.onMeasure).catch((error: unknown) => {
      this.costCurve = undefined;
      throw error;
    });
    return this.costCurve;
  }

  private drafters(mode: SpeculationMode, sampler: Sampler, seq: number, salt: string): Drafter[] {
    const drafters: Drafter[] = [];
    if (mode === 'auto' || mode === 'ngram') drafters.push(new NgramDrafter());
    if (mode === 'auto' || mode === 'suffix') drafters.push(this.suffixHistory(historyKey(mode, salt)));
    const draft = this.draftModelOf(mode);
    if (draft) {
      drafters.push(new DraftModelDrafter(draft, sampler.options, { seed: sampler.options.seed ^ 0x9e3779b9, seq, constraint: () => sampler.forkConstraint() }));
    }
    return drafters;
  }

  /** The draft model's context when the mode drafts with it (the one costly drafter), else undefined. */
  private draftModelOf(mode: SpeculationMode): Context | undefined {
    return mode === 'auto' || mode === 'draft' ? this.options.draft : undefined;
  }

  /**
   * The mode's shared history, or, while another request holds it, a private one for this
   * request (concurrent requests then draft without each other's outputs, never from a history
   * two requests append to at once).
   */
  private suffixHistory(key: string): SuffixDrafter {
    let suffix = this.suffixes.get(key);
    if (!suffix) {
      suffix = new SuffixDrafter();
      this.suffixes.set(key, suffix);
    }
    if (this.lentSuffixes.has(suffix)) return new SuffixDrafter();
    this.lentSuffixes.add(suffix);
    return suffix;
  }

  /** Acceptance statistics and costs are kept per mode and sampling regime across requests; each request plans its own steps. */
  private async planner(mode: SpeculationMode, sampler: Sampler, seq: number): Promise<TreePlanner> {
    if (this.options.fixedBudget) return new FixedPlanner(this.options.fixedBudget);
    const key = `${mode}:${sampler.options.temperature > 0 ? 'sampled' : 'greedy'}`;
    let planner = this.planners.get(key);
    if (!planner) {
      const { curve, points } = await this.measuredCostCurve(seq);
      const single = points.find((point) => point.n === 1);
      planner = new AdaptivePlanner({ curve, singleDecodeMs: single ? single.seconds * 1000 : undefined, costlyDrafter: this.draftModelOf(mode) !== undefined });
      this.planners.set(key, planner);
    }
    return planner.forSequence();
  }
}

/** One drafting history per mode and tenant (cache salt): a tenant's outputs never speed up, and so never reveal themselves to, another's. */
function historyKey(mode: SpeculationMode, salt: string): string {
  return `${mode}\u0000${salt}`;
}
