/**
 * Draft-model drafter: a small GGUF with the target's vocabulary proposes a chain of tokens, with a
 * second candidate where it is unsure (greedy), or sampled tokens with their draft distribution q
 * (sampling: the verifier then runs rejection sampling, which keeps the output distribution exact).
 *
 * Its KV cache (sequence 0 of its own context) follows the committed sequence: after a step, the
 * drafted tokens the target accepted are kept, and so is the rest of the chain where the text has
 * not left it yet, so the next proposal only decodes what is new. Its decodes go through the
 * context's DraftBatcher, so the chains of all requests drafting in one engine step are decoded
 * side by side, a batch per depth.
 */
import { Context } from '../llama/context.js';
import { Model, type LoadModelOptions } from '../llama/model.js';
import { greedyToken, isGreedy, tokenDistribution, drawFrom, type SamplingOptions, type TokenConstraint, type TokenDistribution } from '../generate/sampling.js';
import { Prng } from '../generate/prng.js';
import { ROOT, TokenTree, type DraftBudget, type Drafter } from './tree.js';
import { commonPrefixLength } from '../token-sequences.js';
import { draftBatcherOf, type DraftBatcher, type DraftDecode } from './draft-batcher.js';

/**
 * Longest chain the adaptive depth reaches, and the depth of an exploring step's chain. Where a
 * target decode is dear, verifying 24 tokens costs about 9 decodes, and a draft right 19 times in
 * 20 fills such a chain about half the time; verifying 5 costs 4 there (c(2) is 2.7 on some CPUs),
 * so the 4-token chains a request started from were never worth verifying, and probes that asked
 * for them never showed the planner a chain that was.
 */
export const MAX_DRAFT_DEPTH = 24;

/**
 * What a chain's depth gains when the target accepts all of it, and loses at a miss. A miss used to
 * halve it: on embedded m, reasoning text the draft is right 19 times in 20 on then had half its
 * verified steps accept the whole chain (97 of 187), many of them 11-12 tokens long after a miss at
 * 24, each step paying a verify's fixed cost (c(2) is 2.15 there) for fewer tokens than the draft
 * would have given; losing one step instead was worth 1.086x on reasoning (A/B in one process, 20
 * prompts) and 1.021x with the engines' order swapped, 1.01x on rewriting, 0.96x and 1.014x
 * (swapped) on long generation. A chain the draft is unsure of still stops by itself
 * (minPathProbability).
 */
const DEPTH_STEP = 4;

/** What the draft chose after a text: its token and the token's probability, with the runner-up (greedy) or the distribution it was drawn from (sampling). */
interface DraftChoice {
  token: number;
  probability: number;
  q?: TokenDistribution;
  runnerUp?: { token: number; probability: number };
}

export class DraftModelError extends Error {
  override name = 'DraftModelError';
}

export interface DraftModelOptions {
  /**
   * Stop the chain once the drafted path's probability falls below this (default 0.3), or once the
   * path as the budget scores it (DraftBudget.acceptance) falls below the budget's floor.
   */
  minPathProbability?: number;
  /** First chain length; it then adapts to how much of each chain the target accepts (default 4). */
  initialDepth?: number;
  /**
   * Every chain this long (within the budget), without adapting: the oracle bound asks each
   * drafter for all it would ever propose, and picks the prefix itself.
   */
  fixedDepth?: number;
  /** Add the runner-up token as a leaf where the top token's probability is below this (default 0.7). */
  branchBelow?: number;
  /** Seed of the drafter's own random stream (sampling mode). */
  seed?: number;
  /** Sequence id of this drafter's KV in the draft context (one per concurrent request). */
  seq?: number;
  /**
   * Where the request's constraint (its grammar) stands after the committed text, as a copy the
   * drafter moves along its chain (Sampler.forkConstraint): the draft then chooses among the
   * tokens the target may take. Unconstrained, a draft model keeps writing prose where a JSON
   * answer needs a quote, and its chains break at the first such token.
   */
  constraint?: () => TokenConstraint | undefined;
}

/** Throws unless the draft model tokenizes exactly like the target (same size, same pieces, same specials). */
export function checkSameVocabulary(target: Model, draft: Model): void {
  const t = target.tokenizer;
  const d = draft.tokenizer;
  const mismatch = (what: string) => new DraftModelError(`draft model ${draft.path} does not share the target's vocabulary: ${what}`);
  if (t.vocabularySize !== d.vocabularySize) throw mismatch(`${d.vocabularySize} tokens vs ${t.vocabularySize}`);
  if (t.special.bos !== d.special.bos || t.special.eos !== d.special.eos) throw mismatch('different BOS/EOS tokens');
  // Every piece for small vocabularies; an even sample across large ones.
  const stride = Math.max(1, Math.floor(t.vocabularySize / 4096));
  for (let token = 0; token < t.vocabularySize; token += stride) {
    if (t.tokenText(token) !== d.tokenText(token)) throw mismatch(`token ${token} is "${d.tokenText(token)}" vs "${t.tokenText(token)}"`);
  }
}

export class DraftModelDrafter implements Drafter {
  readonly name = 'draft';
  readonly costly = true;
  private readonly batcher: DraftBatcher;
  private readonly rng: Prng;
  private readonly greedy: boolean;
  private readonly minPathProbability: number;
  private readonly seq: number;
  private readonly branchBelow: number;
  private readonly constraint: (() => TokenConstraint | undefined) | undefined;
  /** The committed sequence (prompt + emitted), as the target sees it. */
  private sequence: number[] = [];
  /** Tokens whose KV is in the draft context, in order (may run past `sequence` with old drafts). */
  private cached: number[] = [];
  /**
   * choices[i]: what the draft chose after cached[0..i] (undefined where that token's logits were
   * not read, inside a catch-up). The part of a chain past what the planner verified is drafted
   * already when the target accepts up to it: on embedded m, reasoning plans verified 14 nodes of
   * 24-token chains, a draft decode costs a tenth of a target's, and drafting was a fifth of the
   * time of the steps that verified a chain.
   */
  private choices: (DraftChoice | undefined)[] = [];
  /**
   * Chain length for the next proposal. Every drafted token costs a draft decode whether or not
   * the planner verifies it, so the chain grows while the target accepts all of it and shrinks to
   * just past the accepted part when it does not.
   */
  private depth: number;
  private readonly adaptive: boolean;
  private lastChain: number[] = [];
  /**
   * Tokens emitted in a row that began the chain proposed before them, over steps that verified
   * no chain (such a step emits one token, so it judges only a chain's first). The draft is
   * deterministic given the text, so a run as long as the depth means a chain of that depth would
   * have been accepted whole: the depth grows as if it had been verified.
   */
  private unverifiedRun = 0;
  /** This drafter's share of the batched draft decodes so far (ms), and of each proposal's first, with the tokens those first decodes took. */
  private decodeShareMs = 0;
  private catchUpShareMs = 0;
  private caughtUpTokens = 0;
  /** Decodes so far, each of which drafted one node (the last of a chain may be cut off after it). */
  private decodes = 0;
  /** Decodes in the proposal being drafted. */
  private proposalDecodes = 0;

  constructor(
    private readonly context: Context,
    private readonly sampling: SamplingOptions,
    options: DraftModelOptions = {},
  ) {
    this.batcher = draftBatcherOf(context);
    this.rng = new Prng(options.seed ?? 0x5eed);
    this.greedy = isGreedy(sampling);
    this.minPathProbability = options.minPathProbability ?? 0.3;
    this.depth = options.fixedDepth ?? options.initialDepth ?? 4;
    this.adaptive = options.fixedDepth === undefined;
    this.branchBelow = options.branchBelow ?? 0.7;
    this.seq = options.seq ?? 0;
    this.constraint = options.constraint;
  }

  /** Loads the draft model next to an already loaded target and checks the vocabularies match. */
  static async loadModel(path: string, target: Model, options: LoadModelOptions = {}): Promise<Model> {
    const draft = await Model.load(path, { ...options, gpu: target.library.backend });
    try {
      checkSameVocabulary(target, draft);
    } catch (error) {
      draft.dispose();
      throw error;
    }
    return draft;
  }

  /** Time its proposals cost the step (ms): its share of each batched decode, not the wall time it waited for its batch-mates. */
  get spentMs(): number {
    return this.decodeShareMs;
  }

  get catchUpMs(): number {
    return this.catchUpShareMs;
  }

  get draftedNodes(): number {
    return this.decodes;
  }

  get catchUpTokens(): number {
    return this.caughtUpTokens;
  }

  /** What choiceAfter() would decode first for the committed text (a choice it already read still counts one). */
  get pendingTokens(): number {
    return this.sequence.length - this.keptFor(this.sequence);
  }

  begin(prompt: readonly number[]): void {
    if (this.sequence.length === 0) this.batcher.join();
    this.sequence = [...prompt];
    // Another request's drafter may have used this sequence id before.
    this.context.seqRemove(this.seq);
    this.cached = [];
    this.choices = [];
  }

  append(tokens: readonly number[]): void {
    this.sequence.push(...tokens);
    if (this.lastChain.length === 0 || !this.adaptive) return;
    const accepted = commonPrefixLength(this.lastChain, tokens);
    if (accepted === this.lastChain.length) this.grow();
    else if (accepted < tokens.length) {
      // A miss costs the depth one step (it stays at least just past the accepted part): one wrong
      // token in a run of right ones says little about the next chain.
      this.depth = Math.max(accepted + 1, this.depth - DEPTH_STEP);
      this.unverifiedRun = 0;
    } else if ((this.unverifiedRun += accepted) >= this.depth) this.grow();
    // Otherwise every emitted token matched a chain that runs on: the chain is not judged yet.
    this.lastChain = [];
  }

  private grow(): void {
    this.depth = Math.min(this.depth + DEPTH_STEP, MAX_DRAFT_DEPTH);
    this.unverifiedRun = 0;
  }

  async propose(root: number, budget: DraftBudget): Promise<TokenTree> {
    const tree = new TokenTree(root);
    this.lastChain = [];
    const room = this.context.contextSize - this.sequence.length - 1;
    const depthLimit = Math.min(budget.explore ? MAX_DRAFT_DEPTH : this.depth, budget.maxDepth, budget.maxNodes, room);
    if (depthLimit <= 0) return tree;
    const history = [...this.sequence];
    // The constraint's state follows `history` (a choice read for a text is made at that text's state).
    const cursor = this.constraint?.();
    // Each decode's logits are read during its (batched) decode: the next one overwrites them.
    const choose = (logits: Float32Array) => this.choose(logits, history, cursor);
    try {
      this.proposalDecodes = 0;
      let choice = await this.choiceAfter(history, choose);
      let parent = ROOT;
      let pathProbability = 1;
      // The path as the planner will score it (by the draft's own probabilities where the budget has no rates).
      let acceptedPath = 1;
      for (let depth = 1; depth <= depthLimit && tree.draftCount < budget.maxNodes; depth++) {
        pathProbability *= choice.probability;
        acceptedPath *= budget.acceptance?.(this.name, depth, choice.probability) ?? choice.probability;
        if ((pathProbability < this.minPathProbability || acceptedPath < (budget.minPathProbability ?? 0)) && depth > 1) break;
        if (cursor && !cursor.allows(choice.token)) break;
        const node = tree.addChild(parent, choice.token, pathProbability, this.name);
        if (choice.q) tree.setDraft(parent, choice.q, [choice.token], { withReplacement: true, source: this.name, groupRate: choice.probability });
        if (choice.runnerUp && budget.maxBranches > 1 && tree.draftCount < budget.maxNodes) {
          tree.addChild(parent, choice.runnerUp.token, (pathProbability / choice.probability) * choice.runnerUp.probability, this.name);
        }
        parent = node;
        history.push(choice.token);
        cursor?.accept(choice.token);
        this.lastChain.push(choice.token);
        if (depth === depthLimit) break;
        choice = await this.choiceAfter(history, choose);
      }
      return tree;
    } finally {
      cursor?.dispose();
    }
  }

  /** The drafter serves one request: it leaves its context's batcher here. */
  end(): void {
    if (this.sequence.length > 0) this.batcher.leave();
    this.sequence = [];
  }

  /**
   * What the draft chooses after `text`: known without a decode where the draft KV holds all of
   * `text` and that choice was read (the draft is deterministic given the text, and a sampled
   * choice was drawn from q before the target saw anything, so reusing it keeps rejection sampling
   * exact). Otherwise the KV keeps its longest common prefix with `text` (accepted drafts stay),
   * the rest is cut, the new tokens are decoded and `read` chooses from the last one's logits.
   */
  private async choiceAfter(text: readonly number[], read: (logits: Float32Array) => DraftChoice): Promise<DraftChoice> {
    const common = commonPrefixLength(this.cached, text);
    const known = common === text.length ? this.choices[common - 1] : undefined;
    if (known) return known;
    const kept = this.keptFor(text, common);
    if (this.cached.length > kept) this.context.seqRemove(this.seq, kept, -1);
    this.cached.length = kept;
    this.choices.length = kept;
    return this.decode(text.slice(kept), read);
  }

  /**
   * Cached tokens a decode towards `text` keeps: their common prefix (`common`), short of text's
   * last token, whose logits the decode must give.
   */
  private keptFor(text: readonly number[], common = commonPrefixLength(this.cached, text)): number {
    return Math.min(common, text.length - 1);
  }

  /** Evaluates `tokens` after what is cached (batched with other requests' drafting). */
  private async decode(tokens: readonly number[], read: (logits: Float32Array) => DraftChoice): Promise<DraftChoice> {
    const result: DraftDecode<DraftChoice> = await this.batcher.evaluate(this.seq, tokens, this.cached.length, read);
    this.cached.push(...tokens);
    this.choices.length = this.cached.length;
    this.choices[this.cached.length - 1] = result.value;
    this.decodeShareMs += result.ms;
    // The first decode brings the draft KV up to where the chain goes on from: the committed text,
    // or the end of the last chain's part that the text has not left.
    if (this.proposalDecodes++ === 0) {
      this.catchUpShareMs += result.ms;
      this.caughtUpTokens += tokens.length;
    }
    this.decodes++;
    return result.value;
  }

  /**
   * Greedy: the draft's argmax (and runner-up when unsure). Sampling: a draw from q, recorded for
   * rejection sampling. Within a constraint, among the tokens it allows (q restricted to them).
   */
  private choose(logits: Float32Array, history: readonly number[], constraint: TokenConstraint | undefined): DraftChoice {
    if (!this.greedy) {
      const q = tokenDistribution(constraint ? restrictedOrNot(constraint, logits) : logits, history, this.sampling);
      const token = drawFrom(q, this.rng.next());
      return { token, probability: q.probs[q.ids.indexOf(token)], q };
    }
    let token = greedyToken(logits, history, this.sampling);
    if (constraint && !constraint.allows(token)) {
      logits = restrictedOrNot(constraint, logits);
      token = greedyToken(logits, history, this.sampling);
    }
    const [first, second] = topTwoProbabilities(logits, token);
    const runnerUp = first < this.branchBelow && second.token >= 0 ? second : undefined;
    return { token, probability: first, runnerUp };
  }
}

/** The logits the constraint allows; all of them where it allows none (the chain then ends at the token it refuses). */
function restrictedOrNot(constraint: TokenConstraint, logits: Float32Array): Float32Array {
  try {
    return constraint.restrict(logits);
  } catch {
    return logits;
  }
}

/** Softmax probability of `best` and the best other token, in one pass over the logits. */
function topTwoProbabilities(logits: Float32Array, best: number): [number, { token: number; probability: number }] {
  let max = -Infinity;
  let second = -1;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] > max) max = logits[i];
    if (i !== best && (second < 0 || logits[i] > logits[second])) second = i;
  }
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return [Math.exp(logits[best] - max) / sum, { token: second, probability: second >= 0 ? Math.exp(logits[second] - max) / sum : 0 }];
}

/** Opens a draft context sized like the target's, with its flash-attention setting. */
export function createDraftContext(draft: Model, target: Context, threads?: number): Context {
  return Context.create(draft, { contextSize: target.contextSize, batchSize: Math.min(target.batchSize, 512), sequences: target.sequences, threads, flashAttention: target.flashAttention });
}
