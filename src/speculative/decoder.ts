/**
 * Speculative decoding with token trees: drafters propose, the target verifies the whole tree in
 * one llama_decode (the engine loop's batch, shared with other sequences), the acceptance rule
 * keeps exactly what plain decoding would have produced.
 *
 * This decoder is policy: what to draft, how much of it to verify, what to accept. The KV
 * mechanism (one sequence id per root-to-leaf branch, the committed prefix shared into each,
 * the accepted branch kept and every other cell dropped) belongs to the engine loop.
 */
import { emptyTimings, type Accepted, type DecodedStep, type NodeLogits, type SequenceDecoder, type StepLimits } from '../generate/decoder.js';
import type { Sampler } from '../generate/sampling.js';
import { acceptTree } from './accept.js';
import { withoutRefused } from './constrained-trees.js';
import { unionTrees } from './combine.js';
import type { TreeLimits, WalkProgress } from './cost-model.js';
import type { CostlyDraft } from './costly-drafts.js';
import { ROOT, TokenTree, type DraftBudget, type Drafter } from './tree.js';

/** Chooses how much of the candidate tree is worth verifying, and learns from what was accepted. */
export interface TreePlanner {
  /**
   * The budget drafters get for this step; maxNodes 0 skips drafting (when speculation has not
   * been paying, even asking the drafters costs more than it brings). `step` is the engine's step
   * number (StepLimits.step), on which probe schedules line up across requests.
   */
  budget(batch?: SharedBatch, step?: number): DraftBudget;
  /**
   * The part of `tree` (every drafter's proposals, merged) to verify within `limits` (the root
   * alone = a plain step). `batch` says what else the step's batch holds (absent: the sequence
   * runs alone); `draftedMs` is the time the step has spent drafting so far.
   */
  plan(tree: TokenTree, limits: TreeLimits, batch?: SharedBatch, drafting?: Drafting, draftedMs?: number): TokenTree;
  /**
   * Called after each verification with the verified tree and the accepted node indices, and as
   * drafts that were not verified are followed against plain decoding (`walk`: what of their walk
   * was reported before, and whether it has ended).
   */
  observe(tree: TokenTree, acceptedNodes: readonly number[], walk?: WalkProgress): void;
  /**
   * Drafted tokens expected to be accepted from the part of `tree` worth verifying now (beside
   * `batch` when shared); a pure estimate that changes no state (absent: no estimate).
   */
  expectedAccepted?(tree: TokenTree, batch?: SharedBatch): number;
  /** Called after each decode the sequence took part in, with what the batch held and its duration. */
  observeDecode?(step: DecodedStep, ms: number): void;
  /**
   * Called after each whole step (drafting, verification, acceptance) with the tokens it emitted,
   * its duration and which drafters were asked (a step that drafted and verified nothing still
   * paid); the step is the one observeDecode() last saw, alone or shared.
   */
  observeStep?(emitted: number, ms: number, drafting: Drafting): void;
  /**
   * Whether the costly drafter `name` is worth asking at engine step `step`, beside `batch` when
   * shared (absent: always), when it must first catch up on `pendingTokens`. Asked only when the
   * cheap drafters found too little.
   */
  costlyDrafterPays?(name: string, batch: SharedBatch | undefined, step: number, pendingTokens?: number): boolean;
  /** A costly drafter's draft and what it cost. */
  observeCostlyDraft?(name: string, draft: CostlyDraft): void;
}

/**
 * Which drafters a step asked: none, only the cheap ones (n-gram, suffix: microseconds), or a
 * costly one too (a draft model: a decode per drafted token). They differ in cost by orders of
 * magnitude, so the planner prices and schedules them apart.
 */
export type Drafting = 'none' | 'cheap' | 'costly';

/** Other sequences' tokens in the same step's batch. */
export interface SharedBatch {
  tokens: number;
  sequences: number;
}

export interface DrafterStats {
  /** Nodes of this drafter that were verified. */
  proposed: number;
  /** Of those, accepted. */
  accepted: number;
}

export interface SpeculationStats {
  /** Verification steps (target decodes after the first token). */
  steps: number;
  /** Steps that verified at least one drafted node. */
  speculativeSteps: number;
  /** Tokens emitted by those steps. */
  emitted: number;
  /** Drafted nodes verified in total. */
  verifiedNodes: number;
  /** Mean tokens emitted per verification step (accepted drafts + the bonus token): τ. */
  tau: number;
  drafters: Record<string, DrafterStats>;
}

export interface SpeculativeDecoderOptions {
  drafters: readonly Drafter[];
  planner: TreePlanner;
  /** Called once the request is over (its drafters have ended). */
  onDispose?: () => void;
}

/**
 * Model-free drafts expected to yield this many accepted tokens make a draft model's proposal not
 * worth its decodes this step. Expected, not merely deep: on reasoning text the n-gram and suffix
 * drafters offer 60-token chains of which a couple of tokens are accepted, while the draft model
 * is right 19 times in 20. And expected from what is worth verifying: 9 tokens spread over a
 * 63-node tree that costs 17 decodes to verify are no reason to skip the draft model.
 */
const CHEAP_DRAFTS_ENOUGH = 8;

/** Other sequences in the step's batch, as a planner prices them (undefined: the sequence runs alone). */
function sharedBatch(limits: StepLimits): SharedBatch | undefined {
  return limits.sequences <= 1 ? undefined : { tokens: limits.batchTokens, sequences: limits.sequences - 1 };
}

/**
 * A draft followed against what plain decoding emits: the node the walk has reached, the nodes it
 * went through, and how many of its path's nodes have been reported.
 */
interface Shadow {
  tree: TokenTree;
  node: number;
  accepted: number[];
  settled: number;
}

/** Marks a step whose drafters were not asked. */
const NOTHING_DRAFTED = new TokenTree(-1);

export class SpeculativeDecoder implements SequenceDecoder {
  readonly name: string;
  readonly timings = emptyTimings();
  private readonly drafterStats: Record<string, DrafterStats> = {};
  private readonly hasCostlyDrafter: boolean;
  private steps = 0;
  private speculativeSteps = 0;
  private emitted = 0;
  private verifiedNodes = 0;
  /**
   * Tokens emitted since the drafters were last asked. Drafters need them only to propose, so
   * while drafting backs off they are handed over in one batch: a call per step into cold
   * drafter code costs several times the work itself.
   */
  private readonly unappended: number[] = [];
  /**
   * Drafts the planner chose not to verify, followed against the tokens plain decoding emits
   * (greedy and sample-and-match accept a node exactly when it matches what is emitted), so
   * acceptance keeps being learnt without paying for verification. Every step's drafts are
   * followed, however many are still being followed: learning only from drafts made where the last
   * one ended learnt from exactly the tokens where a long match breaks (a 114-token match scored
   * 0.57 at depth 1 on a paragraph the model repeated 4 times), and left a draft model's drafts
   * made meanwhile uncounted.
   */
  private shadows: Shadow[] = [];
  /** This step: when it started, which drafters it asked, the candidates the plan was cut from. */
  private step: { started: number; drafting: Drafting; candidates: TokenTree } = { started: 0, drafting: 'none', candidates: NOTHING_DRAFTED };
  /** What draft() got this step, for propose() to cut (no budget: the planner skipped drafting). */
  private drafts: { budget?: DraftBudget; trees: TokenTree[] } | undefined;

  constructor(
    private readonly sampler: Sampler,
    private readonly options: SpeculativeDecoderOptions,
  ) {
    this.name = `speculative(${options.drafters.map((d) => d.name).join('+')})`;
    this.hasCostlyDrafter = options.drafters.some((drafter) => drafter.costly);
    for (const drafter of options.drafters) this.drafterStats[drafter.name] = { proposed: 0, accepted: 0 };
  }

  async start(prompt: readonly number[], logits: Float32Array): Promise<number> {
    for (const drafter of this.options.drafters) await drafter.begin(prompt);
    const first = this.timed('samplingMs', () => this.sampler.next(logits, prompt));
    this.unappended.push(first);
    return first;
  }

  /**
   * Asks the drafters for this step's candidates. The engine loop calls it for every decoding
   * request at once, so their draft-model decodes are batched; `limits` are then an estimate (the
   * other sequences' pending tokens only), and propose() cuts the plan with the step's own.
   */
  async draft(sequence: readonly number[], limits: StepLimits): Promise<void> {
    const root = sequence[sequence.length - 1];
    this.step = { started: performance.now(), drafting: 'none', candidates: NOTHING_DRAFTED };
    this.drafts = { trees: [] };
    const batch = sharedBatch(limits);
    // Most steps of a generation where drafts do not pay skip drafting here: nothing allocated, nothing awaited.
    const budget = this.draftBudget(Math.min(limits.room, limits.maxNodes) - 1, batch, limits.step);
    if (!budget) return;
    this.drafts = { budget, trees: await this.askDrafters(root, budget, batch, limits.step) };
    this.timings.draftMs += performance.now() - this.step.started;
  }

  async propose(sequence: readonly number[], limits: StepLimits): Promise<TokenTree> {
    if (!this.drafts) await this.draft(sequence, limits);
    const { budget, trees } = this.drafts!;
    this.drafts = undefined;
    const root = new TokenTree(sequence[sequence.length - 1]);
    const maxNodes = Math.min(budget?.maxNodes ?? 0, Math.min(limits.room, limits.maxNodes) - 1);
    if (trees.length === 0 || maxNodes <= 0) return root;
    const started = performance.now();
    // The planner cuts the union by calibrated acceptance: a drafter's own scores do not compare
    // with another's, and cutting by them let 60 unsure n-gram nodes crowd out a sure draft chain.
    const union = this.allowedDrafts(unionTrees(trees));
    const drafted = started - this.step.started;
    const tree = this.options.planner.plan(union, { maxNodes, maxLeaves: limits.maxBranches }, sharedBatch(limits), this.step.drafting, drafted);
    this.step.candidates = union;
    this.timings.draftMs += performance.now() - started;
    return tree;
  }

  /** The drafts the request's constraint allows after the root (all of them without one). */
  private allowedDrafts(tree: TokenTree): TokenTree {
    const constraint = this.sampler.forkConstraint();
    return constraint ? withoutRefused(tree, constraint) : tree;
  }

  observeDecode(ms: number, step: DecodedStep): void {
    this.timings.verifyMs += ms;
    this.options.planner.observeDecode?.(step, ms);
  }

  accept(tree: TokenTree, logitsOf: NodeLogits, sequence: readonly number[]): Accepted {
    this.steps++;
    const accepted = tree.draftCount === 0 ? this.plainAccept(logitsOf, sequence) : this.treeAccept(tree, logitsOf, sequence);
    const emitted = accepted.tokens;
    this.emitted += emitted.length;
    const { candidates, drafting, started } = this.step;
    if (tree.draftCount === 0 && candidates.draftCount > 0) this.shadows.push({ tree: candidates, node: ROOT, accepted: [], settled: 0 });
    this.shadows = this.shadows.filter((shadow) => this.followShadow(shadow, emitted));
    for (const token of emitted) this.unappended.push(token);
    this.options.planner.observeStep?.(emitted.length, performance.now() - started, drafting);
    return accepted;
  }

  private plainAccept(logitsOf: NodeLogits, sequence: readonly number[]): Accepted {
    return { tokens: [this.timed('samplingMs', () => this.sampler.next(logitsOf(ROOT), sequence))], draftedBy: [null], lastNode: ROOT };
  }

  private treeAccept(tree: TokenTree, logitsOf: NodeLogits, sequence: readonly number[]): Accepted {
    this.speculativeSteps++;
    this.verifiedNodes += tree.draftCount;
    // acceptTree extends the history in place while it walks, and restores it.
    const history = sequence.slice(0, -1);
    const result = this.timed('samplingMs', () => acceptTree(tree, logitsOf, history, this.sampler));
    this.options.planner.observe(tree, result.acceptedNodes);
    this.countDrafters(tree, result.acceptedNodes);
    const draftedBy = [...result.acceptedNodes.map((node) => tree.source(node)), null];
    return { tokens: [...result.acceptedTokens, result.bonus], draftedBy, lastNode: result.acceptedNodes.at(-1) ?? ROOT };
  }

  get speculation(): SpeculationStats {
    return {
      steps: this.steps,
      speculativeSteps: this.speculativeSteps,
      emitted: this.emitted,
      verifiedNodes: this.verifiedNodes,
      tau: this.steps > 0 ? this.emitted / this.steps : 0,
      drafters: structuredClone(this.drafterStats),
    };
  }

  dispose(): void {
    this.flushToDrafters();
    for (const drafter of this.options.drafters) drafter.end();
    this.options.onDispose?.();
  }

  /** The planner's budget for this step, within the room left; undefined: no drafting. */
  private draftBudget(room: number, batch: SharedBatch | undefined, step: number): DraftBudget | undefined {
    const budget = this.options.planner.budget(batch, step);
    const maxNodes = Math.max(0, Math.min(budget.maxNodes, room));
    return maxNodes > 0 ? { ...budget, maxNodes } : undefined;
  }

  /** Asks every drafter worth asking this step; the costly ones only when the cheap ones found too little. */
  private async askDrafters(root: number, limited: DraftBudget, batch: SharedBatch | undefined, step: number): Promise<TokenTree[]> {
    this.flushToDrafters();
    const trees: TokenTree[] = [];
    for (const drafter of this.options.drafters) if (!drafter.costly) trees.push(await drafter.propose(root, limited));
    this.step.drafting = trees.length > 0 ? 'cheap' : 'none';
    const planner = this.options.planner;
    const expected = (tree: TokenTree) => planner.expectedAccepted?.(tree, batch) ?? tree.maxDepth();
    if (this.hasCostlyDrafter && limited.costly !== false && !trees.some((tree) => expected(tree) >= CHEAP_DRAFTS_ENOUGH)) {
      for (const drafter of this.options.drafters) {
        if (!drafter.costly || planner.costlyDrafterPays?.(drafter.name, batch, step, drafter.pendingTokens) === false) continue;
        trees.push(await this.proposeCostly(drafter, root, limited));
        this.step.drafting = 'costly';
      }
    }
    return trees;
  }

  /**
   * Walks a shadow tree along emitted tokens, reporting each node as the walk passes it; false
   * once the walk has left the tree or reached a leaf (followed no more). Reporting only walks that
   * had ended reported a miss at once and a 63-token match 63 steps later: while plain decoding
   * went through a looping passage, the statistics learnt its early misses alone, and 10 plain
   * steps in a row left 63-token chains on 40-token suffix matches unverified (expected 3.8 tokens).
   */
  private followShadow(shadow: Shadow, tokens: readonly number[]): boolean {
    let ended = false;
    for (const token of tokens) {
      const next = shadow.tree.childWithToken(shadow.node, token);
      if (next >= 0) {
        shadow.accepted.push(next);
        shadow.node = next;
      }
      ended = next < 0 || shadow.tree.children(next).length === 0;
      if (ended) break;
    }
    if (ended || shadow.accepted.length > shadow.settled) this.options.planner.observe(shadow.tree, shadow.accepted, { settled: shadow.settled, ended });
    shadow.settled = shadow.accepted.length;
    return !ended;
  }

  private async proposeCostly(drafter: Drafter, root: number, budget: DraftBudget): Promise<TokenTree> {
    const spent = () => drafter.spentMs ?? performance.now();
    const before = { ms: spent(), catchUpMs: drafter.catchUpMs ?? 0, catchUpTokens: drafter.catchUpTokens, nodes: drafter.draftedNodes };
    const tree = await drafter.propose(root, budget);
    // A drafter that does not count its nodes drafted all of the tree anew.
    const nodes = before.nodes === undefined ? tree.draftCount : (drafter.draftedNodes ?? 0) - before.nodes;
    const catchUpTokens = before.catchUpTokens === undefined ? undefined : (drafter.catchUpTokens ?? 0) - before.catchUpTokens;
    this.options.planner.observeCostlyDraft?.(drafter.name, { ms: spent() - before.ms, catchUpMs: (drafter.catchUpMs ?? 0) - before.catchUpMs, catchUpTokens, nodes });
    return tree;
  }

  private countDrafters(tree: TokenTree, acceptedNodes: readonly number[]): void {
    const accepted = new Set(acceptedNodes);
    for (let node = 1; node < tree.size; node++) {
      for (const source of tree.sources(node)) {
        const stats = (this.drafterStats[source] ??= { proposed: 0, accepted: 0 });
        stats.proposed++;
        if (accepted.has(node)) stats.accepted++;
      }
    }
  }

  /** Hands the drafters the tokens emitted since they were last asked (callers time it). */
  private flushToDrafters(): void {
    if (this.unappended.length === 0) return;
    for (const drafter of this.options.drafters) drafter.append(this.unappended);
    this.unappended.length = 0;
  }

  private timed<T>(bucket: 'samplingMs', work: () => T): T {
    const started = performance.now();
    const result = work();
    this.timings[bucket] += performance.now() - started;
    return result;
  }
}
