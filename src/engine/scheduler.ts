/**
 * Who runs: admission (first come, first served, within running slots, sequence ids and KV room),
 * preemption when KV room runs out (the newest running request goes back to the front of the
 * queue and recomputes later), and how this step's prefill budget is shared (its size is the
 * PrefillPacer's). Policy only: the loop carries out what it decides (batches, KV ops).
 */
import { commonPrefixLength } from '../token-sequences.js';
import { QueueFullError } from './errors.js';
import type { Request } from './request.js';
import type { SequenceIdPool } from './sequence-ids.js';

export interface SchedulerLimits {
  /** Requests decoding or prefilling at once. */
  maxSequences: number;
  /** Requests waiting for admission beyond the free running slots; more are refused. */
  maxQueued: number;
  /** KV cells of the context. */
  kvCells: number;
}

/**
 * Prompt tokens a new request must share with one still being prefilled before it waits for
 * them, to share their cells instead of computing them beside it (a block of the prefix cache:
 * shorter common beginnings, a chat template's header, are not worth a step's wait).
 */
export const SHARED_PREFIX_WORTH_WAITING = 64;

export class Scheduler {
  readonly waiting: Request[] = [];
  readonly running: Request[] = [];
  private admissions = 0;

  constructor(
    private readonly limits: SchedulerLimits,
    private readonly ids: SequenceIdPool,
  ) {}

  /** Queues a request; refused when every free running slot and every queue place is taken. */
  enqueue(request: Request): void {
    const freeSlots = Math.max(0, this.limits.maxSequences - this.running.length);
    if (this.waiting.length >= this.limits.maxQueued + freeSlots) throw new QueueFullError(this.limits.maxQueued);
    this.waiting.push(request);
  }

  /** Takes a request out of the queue or the running set (the loop frees its KV). */
  remove(request: Request): void {
    for (const list of [this.waiting, this.running]) {
      const at = list.indexOf(request);
      if (at >= 0) list.splice(at, 1);
    }
  }

  get cellsInUse(): number {
    let cells = 0;
    for (const request of this.running) cells += request.cached;
    return cells;
  }

  /**
   * Admits waiting requests in order while a slot, a sequence id and KV room (for their prompt,
   * the running requests' remaining prompts and a token each) are there. The first that does not
   * fit stops admission: first come, first served.
   */
  admit(): Request[] {
    const admitted: Request[] = [];
    let committed = this.cellsInUse + this.running.length;
    // What running prompts still have to prefill (a decoding request is past its prompt: nothing).
    for (const request of this.running) committed += Math.max(0, request.prefillTarget - request.cached);
    while (this.waiting.length > 0 && this.running.length < this.limits.maxSequences) {
      const next = this.waiting[0];
      // Its cached prefix is still being fetched (first come, first served: nothing overtakes it).
      if (next.prefix && !next.prefix.ready) break;
      // A running request is still computing the beginning of its prompt: it shares it once there.
      if (this.awaitsSharedPrefix(next)) break;
      const need = next.prefillTarget + 1;
      if (committed + need > this.limits.kvCells) break;
      if (next.seq === undefined) {
        const seq = this.ids.acquire();
        if (seq === undefined) break;
        next.seq = seq;
      }
      this.waiting.shift();
      next.state = 'prefilling';
      next.admittedAt = ++this.admissions;
      this.running.push(next);
      admitted.push(next);
      committed += need;
    }
    return admitted;
  }

  /**
   * A new prompt that begins with enough of a prompt a running request has not finished
   * evaluating waits for it: admitted then, it shares those cells (the loop's shareResidentPrefix)
   * instead of computing them a second time beside it. Simultaneous requests with one long system
   * prompt, or the choices of one request, then evaluate it once.
   */
  private awaitsSharedPrefix(next: Request): boolean {
    if (next.resuming) return false;
    const restored = next.prefix?.ready ? next.prefix.match.tokens : 0;
    return this.running.some((donor) => {
      if (donor.state !== 'prefilling') return false;
      const shared = commonPrefixLength(donor.prompt, next.prompt, next.prompt.length - 1);
      return shared >= SHARED_PREFIX_WORTH_WAITING && shared > restored && donor.cached < shared;
    });
  }

  /**
   * Running requests that must give their KV back so every decoding request has a cell for its
   * next token: the newest first. They go back to the front of the queue, keeping their
   * sequence id (their drafters' KV is keyed by it).
   */
  preempt(): Request[] {
    const victims: Request[] = [];
    const need = () => this.cellsInUse + this.running.filter((r) => r.state === 'decoding').length;
    while (need() > this.limits.kvCells && this.running.length > 1) victims.push(this.preemptNewest());
    return victims;
  }

  /** Sends the newest running request back to the front of the queue (the loop frees its KV). */
  preemptNewest(): Request {
    const newest = this.running.reduce((a, b) => (b.admittedAt > a.admittedAt ? b : a));
    this.remove(newest);
    newest.state = 'waiting';
    this.waiting.unshift(newest);
    return newest;
  }

  /**
   * Prompt tokens each prefilling request evaluates this step, first come first, within `budget`
   * (the step's chunk: a long prompt never stalls running streams for more than one).
   */
  prefillChunks(budget: number): { request: Request; count: number }[] {
    const chunks: { request: Request; count: number }[] = [];
    let left = budget;
    for (const request of this.running) {
      if (left <= 0) break;
      if (request.state !== 'prefilling') continue;
      const count = Math.min(left, request.prefillTarget - request.cached);
      if (count > 0) chunks.push({ request, count });
      left -= count;
    }
    return chunks;
  }
}
