/**
 * The answer probe: "what would the model answer if the thinking stopped here?", asked as one
 * more branch of a token tree. From the tree's root (the pending token that ends a thinking
 * step) the branch runs `</think>` + the answer prefix + a candidate answer (from a drafter, or
 * the result the thinking last concluded). One verification of the tree yields the target's row
 * at every probe node, which scores the whole probe: the answer the target itself would write
 * (its argmax along the branch) and its confidence (the geometric mean of the target's
 * probabilities of the candidate's tokens). The branch is only ever verified, never accepted
 * unless the target itself would emit it, so its KV goes with the rest of the rejected tree.
 */
import { DEFAULT_ANSWER_PREFIX } from './answers.js';
import type { ThinkingTagTokens } from './segments.js';
import { ROOT, TokenTree } from '../speculative/tree.js';
import { commonPrefixLength } from '../token-sequences.js';
import { logProbabilities } from '../generate/logprobs.js';

/** The tokens of one probe and where the candidate answer starts among them. */
export interface ProbeRequest {
  tokens: readonly number[];
  answerStart: number;
}

export interface ProbeScore {
  /** The answer tokens the target would emit, as far as the probe shows them (it stops one past the first disagreement). */
  answerTokens: number[];
  /** The target agreed with every candidate token. */
  agreed: boolean;
  /** Geometric mean of the target's probabilities of the candidate answer tokens. */
  confidence: number;
}

/** Source name of probe nodes in a tree (drafters' statistics leave them out). */
export const PROBE_SOURCE = 'probe';

/**
 * `</think>` + "\n" + prefix + " " + candidate, tokenized as the model would write it (`tokenize`
 * without BOS). The answer starts where the tokens of the text without the candidate end.
 */
export async function probeRequest(
  tokenize: (text: string) => readonly number[] | Promise<readonly number[]>,
  tags: Pick<ThinkingTagTokens, 'close'>,
  candidate: string,
  prefix = DEFAULT_ANSWER_PREFIX,
): Promise<ProbeRequest> {
  return probeFromTokens(tags, await tokenize(`\n${prefix}`), await tokenize(`\n${prefix} ${candidate}`));
}

/** `probeRequest` for a synchronous tokenizer (the engine loop's, where a probe rides a step). */
export function probeRequestSync(tokenize: (text: string) => readonly number[], tags: Pick<ThinkingTagTokens, 'close'>, candidate: string, prefix = DEFAULT_ANSWER_PREFIX): ProbeRequest {
  return probeFromTokens(tags, tokenize(`\n${prefix}`), tokenize(`\n${prefix} ${candidate}`));
}

function probeFromTokens(tags: Pick<ThinkingTagTokens, 'close'>, lead: readonly number[], full: readonly number[]): ProbeRequest {
  const shared = commonPrefixLength(lead, full);
  return { tokens: [tags.close, ...full], answerStart: 1 + shared };
}

/**
 * The answer a scored probe shows: the candidate, when the target agreed with every one of its
 * tokens and then ends the number (`answerEnd`, the testbed's "."); undefined otherwise (the
 * probe did not show the model's answer whole).
 */
export function probedAnswer(score: ProbeScore, candidate: string, answerEnd: number): string | undefined {
  return score.agreed && score.answerTokens.at(-1) === answerEnd ? candidate : undefined;
}

/** Adds the probe as a branch from `from` (default the root); returns its node indices in probe order. */
export function addProbeBranch(tree: TokenTree, probe: ProbeRequest, from = ROOT): number[] {
  return tree.addPath(probe.tokens, probe.tokens.map(() => 0), PROBE_SOURCE, from);
}

/**
 * Scores a verified probe: `rowOf(node)` is the target's logits row at that node (choosing the
 * token after it), as a verification computes for every tree node.
 */
export function scoreProbe(tree: TokenTree, nodes: readonly number[], answerStart: number, rowOf: (node: number) => Float32Array): ProbeScore {
  const answerTokens: number[] = [];
  let logSum = 0;
  let agreed = true;
  for (let k = answerStart; k < nodes.length; k++) {
    const row = rowOf(tree.parent(nodes[k]));
    const wanted = tree.token(nodes[k]);
    logSum += logProbabilities(row)(wanted);
    if (agreed) {
      const chosen = argmax(row);
      answerTokens.push(chosen);
      agreed = chosen === wanted;
    }
  }
  if (agreed && nodes.length > 0) answerTokens.push(argmax(rowOf(nodes[nodes.length - 1])));
  const count = nodes.length - answerStart;
  return { answerTokens, agreed, confidence: count > 0 ? Math.exp(logSum / count) : 0 };
}

/**
 * A probe on its own, outside a speculative step (calibration and benchmarks): `rows[m]` is the
 * target's logits row after the sequence so far (ending with the boundary token `root`) and the
 * first m probe tokens (a branch of `Engine.branchRows`).
 */
export function scoreProbeAlone(probe: ProbeRequest, root: number, rows: readonly Float32Array[]): ProbeScore {
  const tree = new TokenTree(root);
  const nodes = addProbeBranch(tree, probe);
  const rowAt = new Map<number, Float32Array>(nodes.map((node, k) => [node, rows[k + 1]]));
  return scoreProbe(tree, nodes, probe.answerStart, (node) => rowAt.get(node)!);
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
