/**
 * Speculative decoding with token trees: drafters propose, the target verifies the whole tree in
 * one llama_decode, the acceptance rule keeps exactly what plain decoding would have produced.
 *
 * KV layout during a step (unified cache): the committed sequence lives in sequence 0. A tree with
 * L leaves uses sequences 0..L-1, one per root-to-leaf branch; the committed cells are shared into
 * every branch with seq_cp (no copy: a unified cell carries a set of sequence ids), and each tree
 * node carries the ids of the branches through it, so it attends to its ancestors only. After
 * acceptance, the branch holding the accepted path is kept, cut after the last accepted node, and
 * renamed back to sequence 0: no cell of a rejected branch survives.
 */
import { TokenBatch } from '../llama/batch.js';
import type { Context } from '../llama/context.js';
import { checkPromptFits, decodePending, emptyTimings, evaluatePrompt, kvRoom, type Decoder } from '../generate/decoder.js';
import type { Sampler } from '../generate/sampling.js';
import { acceptTree } from './accept.js';
import { combineTrees } from './combine.js';
import { ROOT, TokenTree, type DraftBudget, type Drafter } from './tree.js';

/** Chooses how much of the candidate tree is worth verifying, and learns from what was accepted. */
export interface TreePlanner {
  /**
   * The budget drafters get for this step; maxNodes 0 skips drafting (when speculation has not
   * been paying, even asking the drafters costs more than it brings).
   */
  budget(): DraftBudget;
  /** The part of `tree` to verify (the root alone = a plain step), with at most `maxLeaves` leaves. */
  plan(tree: TokenTree, maxLeaves: number): TokenTree;
  /** Called after each verification with the verified tree and the accepted node indices. */
  observe(tree: TokenTree, acceptedNodes: readonly number[]): void;
  /** Called after each verification decode with the batch size and its duration. */
  observeVerifyTime?(batchSize: number, ms: number): void;
  /**
   * Called after each whole step (drafting, verification, acceptance) with the tokens it emitted,
   * its duration and whether the drafters were asked (a step that drafted and verified nothing still paid).
   */
  observeStep?(emitted: number, ms: number, drafted: boolean): void;
  /**
   * Decode time one more accepted draft token saves: a plain decode minus what the token adds to
   * a verify batch (ms; undefined until measured). A drafter whose tokens cost more to draft,
   * per accepted token, than this cannot pay.
   */
  acceptedTokenValueMs?(): number | undefined;
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
  /** Most branches (= llama.cpp sequences) per tree; at most the context's sequence count. */
  maxBranches?: number;
}

/** A model-free chain this deep makes a draft model's proposal not worth its decodes this step. */
const CHEAP_DRAFT_DEPTH_ENOUGH = 8;

/** Marks a step whose drafters were not asked. */
const NOTHING_DRAFTED = new TokenTree(-1);
const NOT_DRAFTING = { tree: NOTHING_DRAFTED, candidates: NOTHING_DRAFTED } as const;

/** While costly drafters do not pay, they are asked once every this many steps, to re-measure. */
const COSTLY_RECHECK_STEPS = 64;

export class SpeculativeDecoder implements Decoder {
  readonly name: string;
  readonly timings = emptyTimings();
  private readonly batch: TokenBatch;
  private readonly maxBranches: number;
  private readonly drafterStats: Record<string, DrafterStats> = {};
  private steps = 0;
  private speculativeSteps = 0;
  private emitted = 0;
  private verifiedNodes = 0;
  /** Drafting time per drafted node of each costly drafter (ms, running mean). */
  private readonly costlyMsPerNode = new Map<string, number>();
  private stepsSinceCostly = 0;
  /**
   * Tokens emitted since the drafters were last asked. Drafters need them only to propose, so
   * while drafting backs off they are handed over in one batch: a call per step into cold
   * drafter code costs several times the work itself.
   */
  private readonly unappended: number[] = [];
  /**
   * Drafts the planner chose not to verify, followed against the tokens plain decoding emits
   * (greedy and sample-and-match accept a node exactly when it matches what is emitted), so
   * acceptance keeps being learnt without paying for verification.
   */
  private shadow: { tree: TokenTree; node: number; accepted: number[] } | undefined;

  constructor(
    private readonly context: Context,
    private readonly sampler: Sampler,
    private readonly options: SpeculativeDecoderOptions,
  ) {
    this.maxBranches = Math.max(1, Math.min(options.maxBranches ?? context.sequences, context.sequences));
    this.batch = new TokenBatch(Math.min(context.batchSize, 512), this.maxBranches);
    this.name = `speculative(${options.drafters.map((d) => d.name).join('+')})`;
    for (const drafter of options.drafters) this.drafterStats[drafter.name] = { proposed: 0, accepted: 0 };
  }

  async prefill(prompt: readonly number[]): Promise<number> {
    checkPromptFits(this.context, prompt.length);
    const started = performance.now();
    this.context.seqRemove(-1);
    const last = await evaluatePrompt(this.context, this.batch, prompt);
    for (const drafter of this.options.drafters) await drafter.begin(prompt);
    this.timings.prefillMs += performance.now() - started;
    const first = this.timed('samplingMs', () => this.sampler.next(this.context.logits(last), prompt));
    this.unappended.push(first);
    return first;
  }

  async step(sequence: readonly number[]): Promise<readonly number[]> {
    const stepStarted = performance.now();
    const root = sequence[sequence.length - 1];
    const position = sequence.length - 1;
    // Most steps of a generation where drafts do not pay skip drafting here: nothing allocated, nothing awaited.
    const budget = this.draftBudget(kvRoom(this.context, sequence.length) - 1);
    const { tree, candidates } = budget ? await this.draft(root, budget) : NOT_DRAFTING;
    this.steps++;
    const emitted = tree.draftCount === 0 ? await this.plainStep(sequence) : await this.verifyTree(tree, position, sequence);
    this.emitted += emitted.length;
    this.followShadow(emitted);
    if (tree.draftCount === 0 && candidates.draftCount > 0 && !this.shadow) {
      this.shadow = { tree: candidates, node: ROOT, accepted: [] };
      this.followShadow(emitted);
    }
    for (const token of emitted) this.unappended.push(token);
    this.options.planner.observeStep?.(emitted.length, performance.now() - stepStarted, candidates !== NOTHING_DRAFTED);
    return emitted;
  }

  /** Nothing to verify: exactly PlainDecoder's step, without the tree bookkeeping. */
  private async plainStep(sequence: readonly number[]): Promise<number[]> {
    const ms = await decodePending(this.context, this.batch, sequence);
    this.options.planner.observeVerifyTime?.(1, ms);
    this.timings.verifyMs += ms;
    return [this.timed('samplingMs', () => this.sampler.next(this.context.logits(0), sequence))];
  }

  private async verifyTree(tree: TokenTree, position: number, sequence: readonly number[]): Promise<number[]> {
    const assignment = tree.branchIds();
    this.speculativeSteps++;
    this.verifiedNodes += tree.draftCount;

    const verifyStarted = performance.now();
    for (let branch = 1; branch < assignment.branchCount; branch++) this.context.seqCopy(0, branch, -1, position);
    this.batch.clear();
    for (let node = 0; node < tree.size; node++) this.batch.add(tree.token(node), position + tree.depth(node), assignment.nodeBranches[node], true);
    const decodeStarted = performance.now();
    await this.context.decode(this.batch);
    const now = performance.now();
    this.options.planner.observeVerifyTime?.(tree.size, now - decodeStarted);
    this.timings.verifyMs += now - verifyStarted;

    // acceptTree extends the history in place while it walks, and restores it.
    const history = sequence.slice(0, -1);
    const result = this.timed('samplingMs', () => acceptTree(tree, (node) => this.context.logits(node), history, this.sampler.options, this.sampler.rng));
    const lastAccepted = result.acceptedNodes.at(-1) ?? ROOT;
    this.keepBranch(assignment.firstBranch[lastAccepted], position + tree.depth(lastAccepted), assignment.branchCount);
    this.options.planner.observe(tree, result.acceptedNodes);
    this.countDrafters(tree, result.acceptedNodes);
    return [...result.acceptedTokens, result.bonus];
  }

  room(sequenceLength: number): number {
    return kvRoom(this.context, sequenceLength);
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
    this.batch.dispose();
    this.flushToDrafters();
    for (const drafter of this.options.drafters) drafter.end();
  }

  /** The planner's budget for this step, within the KV room and the batch; undefined: no drafting. */
  private draftBudget(room: number): DraftBudget | undefined {
    const budget = this.options.planner.budget();
    const maxNodes = Math.max(0, Math.min(budget.maxNodes, room, this.batch.capacity - 1));
    return maxNodes > 0 ? { ...budget, maxNodes } : undefined;
  }

  /**
   * Asks every drafter, merges their trees and cuts the union to what the planner says pays.
   * Returns the tree to verify and the candidates it was cut from (NOTHING_DRAFTED when no drafter was asked).
   */
  private async draft(root: number, limited: DraftBudget): Promise<{ tree: TokenTree; candidates: TokenTree }> {
    const started = performance.now();
    this.flushToDrafters();
    const trees: TokenTree[] = [];
    for (const drafter of this.options.drafters) if (!drafter.costly) trees.push(await drafter.propose(root, limited));
    if (!trees.some((tree) => tree.maxDepth() >= CHEAP_DRAFT_DEPTH_ENOUGH)) {
      for (const drafter of this.options.drafters) if (drafter.costly && this.costlyPays(drafter.name)) trees.push(await this.proposeCostly(drafter, root, limited));
    }
    if (trees.length === 0) return NOT_DRAFTING;
    const union = combineTrees(trees, limited.maxNodes, { maxLeaves: this.maxBranches });
    const tree = this.options.planner.plan(union, this.maxBranches);
    this.timings.draftMs += performance.now() - started;
    return { tree, candidates: union };
  }

  /** Walks the shadow tree along emitted tokens; reports it once the walk leaves the tree. */
  private followShadow(tokens: readonly number[]): void {
    const shadow = this.shadow;
    if (!shadow) return;
    for (const token of tokens) {
      const next = shadow.tree.childWithToken(shadow.node, token);
      if (next >= 0) {
        shadow.accepted.push(next);
        shadow.node = next;
      }
      if (next < 0 || shadow.tree.children(next).length === 0) {
        this.options.planner.observe(shadow.tree, shadow.accepted);
        this.shadow = undefined;
        return;
      }
    }
  }

  /**
   * A costly drafter (a draft model) pays only if its drafting time per accepted token is below
   * what an accepted token saves. On a tiny target on a CPU a draft decode costs about as much as
   * the verify time a token saves, so it never does; with a large target it easily does.
   */
  private costlyPays(name: string): boolean {
    const msPerNode = this.costlyMsPerNode.get(name);
    const value = this.options.planner.acceptedTokenValueMs?.();
    if (msPerNode === undefined || value === undefined) return true;
    const { proposed, accepted } = this.drafterStats[name];
    const acceptance = (accepted + 1) / (proposed + 1);
    if (msPerNode < value * acceptance) return true;
    if (++this.stepsSinceCostly < COSTLY_RECHECK_STEPS) return false;
    this.stepsSinceCostly = 0;
    return true;
  }

  private async proposeCostly(drafter: Drafter, root: number, budget: DraftBudget): Promise<TokenTree> {
    const started = performance.now();
    const tree = await drafter.propose(root, budget);
    if (tree.draftCount > 0) {
      const msPerNode = (performance.now() - started) / tree.draftCount;
      const previous = this.costlyMsPerNode.get(drafter.name);
      this.costlyMsPerNode.set(drafter.name, previous === undefined ? msPerNode : previous * 0.8 + msPerNode * 0.2);
    }
    return tree;
  }

  /**
   * Keeps the cells of `branch` up to `lastPosition` and makes them sequence 0 again. seq_keep
   * drops every cell outside the branch (rejected siblings) and strips the other ids from shared
   * cells; seq_rm drops the rejected tail of the branch itself.
   */
  private keepBranch(branch: number, lastPosition: number, branchCount: number): void {
    // seq_keep scans every cell: only needed when other branches hold cells.
    if (branchCount > 1) this.context.seqKeep(branch);
    this.context.seqRemove(branch, lastPosition + 1, -1);
    if (branch !== 0) {
      this.context.seqCopy(branch, 0, -1, -1);
      this.context.seqRemove(branch, -1, -1);
    }
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
