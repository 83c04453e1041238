/**
 * Whether a costly drafter (a draft model: one decode per drafted token) is worth asking, learnt
 * for every sequence a planner serves. It pays when its drafting time per node drafted is below
 * what the nodes that plain decoding would emit save. On a tiny target on a CPU a draft decode
 * costs about as much as the verify time a token saves, so it never does; with a large target it
 * easily does, alone, but among 8 sequences a token saves only its share of the step while
 * drafting holds up all 8.
 *
 * Time is paid per node drafted, not per node verified: a 64-token chain of which plans verify
 * the likely first 10 (nearly all accepted) still cost 64 draft decodes. Accepted nodes are counted
 * on verified trees and on drafts followed in the shadow of plain decoding alike.
 */

import { RecentMedian } from '../stats.js';
import { ProbeSchedule } from './probe-schedule.js';

/**
 * While a costly drafter does not pay it is asked anyway, to re-measure: first on engine steps
 * that are multiples of FIRST_RECHECK_STEPS, then twice as far apart after each re-check that
 * finds it still not paying, up to MAX_RECHECK_STEPS (a 64-token chain of the testbed draft
 * costs 15-50 decodes of the tiny target, and a re-check every 1,024 steps took 3-4% of its time).
 */
const FIRST_RECHECK_STEPS = 64;
const MAX_RECHECK_STEPS = 4096;

/** Weight a drafter's yield keeps at each new draft: the recent text counts most. */
const YIELD_MEMORY = 0.9;

/**
 * Drafts whose time per node is priced by its median. A draft decode's cost is the machine's: a
 * mean let one draft slowed by a moment of load (a 458 ms 8-node chain among 5 ms ones, measured
 * while another process ran) raise the price past what a token saves, and the drafter was then
 * re-checked only every 4,096 steps: shut out for the rest of a benchmark.
 */
const TIMED_DRAFTS = 9;

/**
 * A catch-up of at least this many tokens is timed for its cost per token: a shorter one, the few
 * tokens accepted since the step before, costs about a decode whatever its length.
 */
const TIMED_CATCH_UP_TOKENS = 16;

/**
 * Drafts in which the tokens a draft model has lately been right on must pay back a restart: the
 * catch-up on all the text since it was last asked, paid before it drafts anything. Where a target
 * decode is dear it is a few decodes' worth that the next chains repay. On the tiny testbed on a
 * CPU (2 ms a decode) the draft caught up at 0.05-0.08 ms a token, 15-50 ms for the 300-800
 * tokens of a rewriting prompt or of the text since a cheap probe paid, while its drafts gave 3-5
 * accepted tokens of 1.2-1.5 ms each; those restarts took drafting from 4% of rewriting's time
 * (without a draft model) to 10-15%.
 */
const RESTART_PAYBACK_DRAFTS = 4;

/** Share of the time that asking a drafter whose restarts do not pay, to re-measure, may take. */
const RESTART_RECHECK_SHARE = 0.02;

/**
 * One draft of a costly drafter: `nodes` drafted anew in `ms` of its own time, `catchUpMs` of it
 * catching up on `catchUpTokens` (the first node's decode; undefined: not counted). Nodes it
 * proposes again from its last draft cost nothing and are not counted: each node is priced, and
 * counted against what plain decoding emitted, once.
 */
export interface CostlyDraft {
  readonly ms: number;
  readonly catchUpMs: number;
  readonly catchUpTokens?: number;
  readonly nodes: number;
}

interface DraftRecord {
  /** Time per node drafted beyond the first (ms), over the recent drafts of more than one node. */
  readonly timePerNode: RecentMedian;
  /** Catch-up time per token (ms), over the recent catch-ups of TIMED_CATCH_UP_TOKENS or more. */
  readonly catchUpPerToken: RecentMedian;
  /** Drafts, nodes drafted and how many of them plain decoding emitted (decayed sums). */
  drafts: number;
  drafted: number;
  accepted: number;
}

export class CostlyDrafts {
  private readonly records = new Map<string, DraftRecord>();
  private readonly rechecks = new ProbeSchedule(FIRST_RECHECK_STEPS);
  /** The engine step whose re-check a sequence has taken. */
  private recheckedAt = -1;

  /**
   * A draft, priced as if the drafter were asked every step: a node costs a decode, the first
   * one's being the catch-up on the few tokens accepted since. Asked rarely, a draft model first
   * catches up on hundreds of tokens; charging that to every node would keep it from ever being
   * asked often enough to show what it is worth.
   */
  observeDraft(name: string, { ms, catchUpMs, catchUpTokens, nodes }: CostlyDraft): void {
    if (nodes <= 0) return;
    let record = this.records.get(name);
    if (!record) {
      record = { timePerNode: new RecentMedian(TIMED_DRAFTS), catchUpPerToken: new RecentMedian(TIMED_DRAFTS), drafts: 0, drafted: 0, accepted: 0 };
      this.records.set(name, record);
    }
    // A one-node draft is all catch-up (the decode that gives the first node): it prices no node.
    if (nodes > 1) record.timePerNode.add((ms - catchUpMs) / (nodes - 1));
    if (catchUpTokens !== undefined && catchUpTokens >= TIMED_CATCH_UP_TOKENS) record.catchUpPerToken.add(catchUpMs / catchUpTokens);
    record.drafts = record.drafts * YIELD_MEMORY + 1;
    record.drafted = record.drafted * YIELD_MEMORY + nodes;
    record.accepted *= YIELD_MEMORY;
  }

  /**
   * What drafting one more node of a chain costs (ms), the dearest costly drafter's: its share of
   * a batched decode, and all of one while it drafts on alone (undefined until measured).
   */
  get msPerNode(): number | undefined {
    const times = [...this.records.values()].flatMap((record) => record.timePerNode.value ?? []);
    return times.length > 0 ? Math.max(...times) : undefined;
  }

  /** A node `name` drafted that plain decoding emitted (other drafters' names are ignored). */
  observeAccepted(name: string): void {
    const record = this.records.get(name);
    if (record) record.accepted++;
  }

  /**
   * Whether to ask `name` at engine step `step`, when an accepted token saves `tokenValueMs`
   * (undefined: not measured yet) and it must first catch up on `pendingTokens`. A re-check is
   * one sequence's, the first to ask in a step due (the engine's step number): it measures for
   * all, and a draft model asked after a gap first catches up on every token since; beside 15
   * other sequences, all of them catching up at once took 0.5-1.4 s, 4-9 plain steps.
   */
  pays(name: string, tokenValueMs: number | undefined, step: number, pendingTokens = 0): boolean {
    const record = this.records.get(name);
    const msPerNode = record?.timePerNode.value;
    if (!record || msPerNode === undefined || tokenValueMs === undefined) return true;
    const restartMs = this.restartMs(record, pendingTokens);
    // What its recent drafts gave, in accepted tokens each, repays the restart within a few drafts.
    const restartPays = restartMs <= RESTART_PAYBACK_DRAFTS * tokenValueMs * (record.accepted / Math.max(1, record.drafts));
    if (restartPays && msPerNode < (tokenValueMs * (record.accepted + 1)) / (record.drafted + 1)) {
      this.rechecks.reset();
      return true;
    }
    // A node that costs more than an accepted token saves pays at no acceptance (a tiny target on
    // a CPU, whose draft decodes cost about what its own do): only the machine's load or the
    // batch the step joins could change that, so it is re-checked at the longest interval at once.
    // Each re-check of the testbed's draft model first catches up on the request so far, 15-35
    // ms, 30-60 decodes. A restart that does not pay is re-checked as rarely as keeps such
    // restarts within their share of the time (a step taking about what a token saves).
    if (msPerNode >= tokenValueMs) this.rechecks.atLeast(MAX_RECHECK_STEPS);
    else if (!restartPays) this.rechecks.atLeast(Math.min(MAX_RECHECK_STEPS, restartMs / (RESTART_RECHECK_SHARE * tokenValueMs)));
    if (step === this.recheckedAt || !this.rechecks.due(step)) return false;
    this.recheckedAt = step;
    this.rechecks.lengthen(MAX_RECHECK_STEPS);
    return true;
  }

  /** What catching up on `pendingTokens` costs before a draft (ms; 0 for a step's usual few, or before it is measured). */
  private restartMs(record: DraftRecord, pendingTokens: number): number {
    return pendingTokens < TIMED_CATCH_UP_TOKENS ? 0 : (record.catchUpPerToken.value ?? 0) * pendingTokens;
  }
}
