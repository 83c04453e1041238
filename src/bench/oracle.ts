/**
 * The oracle bound of a speculative configuration: how fast the plain trajectory could have been
 * produced by a planner that knew, at every step, which drafted nodes the target will accept.
 *
 * Along plain decoding's own output, the drafters are asked at every position for all they would
 * ever propose (the largest budget, the draft model's deepest chain), whatever a planner would
 * have asked. The accepted part of each proposal is the path that matches the plain output; the
 * oracle may verify any prefix of it, at c(k+1)·t₁ (or a bigger batch's cost where the curve dips,
 * as if filled up with nodes that are then rejected) plus the drafting that prefix needed (the
 * cheap drafters' time, and the draft model's decode for each node the prefix takes, if it needs
 * a node only the draft model proposed). A shortest path over positions then picks, for the
 * whole trajectory, where to decode plainly and how far to speculate. Comparing the realized speedup
 * with this bound tells drafter weakness (a low bound) from planner weakness (realized far below it).
 */
import type { Context } from '../llama/context.js';
import { combineTrees } from '../speculative/combine.js';
import type { CostCurve } from '../speculative/cost-model.js';
import { DraftModelDrafter, MAX_DRAFT_DEPTH } from '../speculative/draft-model.js';
import { NgramDrafter } from '../speculative/ngram.js';
import { MAX_DRAFT_BUDGET } from '../speculative/planner.js';
import { SuffixDrafter } from '../speculative/suffix.js';
import { ROOT, type Drafter, type TokenTree } from '../speculative/tree.js';

/** What the drafters offered at one position of the plain trajectory. */
export interface OracleStep {
  /** Drafted nodes on the path the target accepts (0: nothing useful was proposed). */
  readonly acceptedDepth: number;
  /** Time the cheap drafters took (ms); paid by any speculative step here. */
  readonly cheapMs: number;
  /**
   * What a node of the draft model's chain costs to draft (ms): the mean time of its decodes along
   * the trajectory. Asked at every position, it decodes only the node past the end of its last
   * chain (it proposes the rest again without decoding it), but a step that takes k of its nodes
   * at once leaves k new nodes for the next proposal to draft.
   */
  readonly costlyMsPerNode: number;
  /** Depth of the first accepted node only the draft model proposed (Infinity: none). */
  readonly firstCostlyDepth: number;
}

export interface OracleSchedule {
  /** Decode and drafting time of the best schedule (ms), prefill excluded. */
  readonly ms: number;
  /** Target calls (plain and speculative steps). */
  readonly steps: number;
  /** Its speculative steps, in order: with output token `at` pending, `tokens` tokens emitted (accepted drafts + the bonus). */
  readonly speculative: readonly { at: number; tokens: number }[];
}

/**
 * Fastest way along the trajectory: `steps[i]` is what was drafted with output token i pending
 * (so the trajectory has steps.length + 1 tokens, the first from the prompt's logits).
 */
export function oracleSchedule(steps: readonly OracleStep[], curve: CostCurve, singleMs: number): OracleSchedule {
  const last = steps.length;
  const best = new Float64Array(last + 1).fill(Infinity);
  const calls = new Int32Array(last + 1);
  const cameFrom = new Int32Array(last + 1);
  best[0] = 0;
  const relax = (from: number, to: number, ms: number) => {
    if (best[from] + ms < best[to]) {
      best[to] = best[from] + ms;
      calls[to] = calls[from] + 1;
      cameFrom[to] = from;
    }
  };
  for (const [i, step] of steps.entries()) {
    relax(i, i + 1, singleMs);
    // k accepted drafted nodes and the bonus token: k + 1 tokens for one verify of k + 1.
    for (let k = 1; k <= Math.min(step.acceptedDepth, last - i - 1); k++) {
      const drafting = step.cheapMs + (k >= step.firstCostlyDepth ? step.costlyMsPerNode * k : 0);
      relax(i, i + k + 1, curve.cheapestFrom(k + 1, MAX_DRAFT_BUDGET.maxNodes + 1) * singleMs + drafting);
    }
  }
  const speculative: { at: number; tokens: number }[] = [];
  for (let at = last; at > 0; at = cameFrom[at]) if (at - cameFrom[at] > 1) speculative.push({ at: cameFrom[at], tokens: at - cameFrom[at] });
  return { ms: best[last], steps: calls[last], speculative: speculative.reverse() };
}

/**
 * Drafters as `auto` has them (n-gram, suffix with a history kept across prompts, the draft
 * model when there is one), asked for everything at every position of plain trajectories.
 */
export class OracleDrafting {
  private readonly suffix = new SuffixDrafter();

  /** Without a draft model's context, only the cheap drafters are asked. */
  constructor(private readonly draftContext?: Context) {}

  /** One OracleStep per output token but the last. */
  async steps(prompt: readonly number[], output: readonly number[]): Promise<OracleStep[]> {
    const cheap: Drafter[] = [new NgramDrafter(), this.suffix];
    const costly = this.draftContext && new DraftModelDrafter(this.draftContext, { temperature: 0 }, { fixedDepth: MAX_DRAFT_DEPTH, minPathProbability: 0 });
    const drafters = costly ? [...cheap, costly] : cheap;
    for (const drafter of drafters) await drafter.begin(prompt);
    const steps: Omit<OracleStep, 'costlyMsPerNode'>[] = [];
    let costlyMs = 0;
    try {
      for (let i = 0; i + 1 < output.length; i++) {
        for (const drafter of drafters) drafter.append([output[i]]);
        const started = performance.now();
        const trees: TokenTree[] = [];
        for (const drafter of cheap) trees.push(await drafter.propose(output[i], MAX_DRAFT_BUDGET));
        const cheapDone = performance.now();
        if (costly) trees.push(await costly.propose(output[i], MAX_DRAFT_BUDGET));
        costlyMs += performance.now() - cheapDone;
        // A lone request's tree may have as many branches as nodes (the engine lends it spare sequence ids).
        const union = combineTrees(trees, MAX_DRAFT_BUDGET.maxNodes);
        steps.push({ ...acceptedPath(union, output, i + 1, costly?.name), cheapMs: cheapDone - started });
      }
    } finally {
      for (const drafter of drafters) drafter.end();
    }
    const costlyMsPerNode = costlyMs / Math.max(1, costly?.draftedNodes ?? 0);
    return steps.map((step) => ({ ...step, costlyMsPerNode }));
  }
}

/** How deep `tree` follows `output` from index `from`, and where it first relies on `costly` alone. */
function acceptedPath(tree: TokenTree, output: readonly number[], from: number, costly: string | undefined): Pick<OracleStep, 'acceptedDepth' | 'firstCostlyDepth'> {
  let node = ROOT;
  let depth = 0;
  let firstCostlyDepth = Infinity;
  while (from + depth < output.length) {
    const next = tree.childWithToken(node, output[from + depth]);
    if (next < 0) break;
    depth++;
    if (firstCostlyDepth === Infinity && tree.sources(next).every((source) => source === costly)) firstCostlyDepth = depth;
    node = next;
  }
  return { acceptedDepth: depth, firstCostlyDepth };
}
