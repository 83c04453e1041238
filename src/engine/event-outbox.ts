/**
 * Request events on their way from the worker to the main thread, posted several at a time.
 *
 * Each postMessage wakes the main thread, and on a machine whose cores all decode that wake-up
 * takes a core from llama.cpp: on the 2-core test machine a post cost the worker 40-50 µs, an
 * eighth of a tiny-model step (0.4-0.6 ms). Events wait here until a step ends at least
 * FLUSH_INTERVAL_MS after the last post, then go in one message, every request's together. A
 * request's first event (time to first token) and its last (done, error) go at once, and nothing
 * waits while the loop is idle. Where a step takes longer than the interval (any model of a
 * realistic size), every step posts as before.
 *
 * A request's chunks that wait together become one chunk of all their tokens, as a speculative
 * step's are: a reader (an SSE stream, a latency measurement) then sees one piece of k tokens
 * after the wait, not one piece after it and k - 1 at no interval.
 */
import type { GenerationChunk } from '../generate/generate.js';
import type { AddressedEvent, WireEvent } from './protocol.js';

/**
 * How long events wait for the ones after them: a few tokens of a tiny model, far below what a
 * reader notices. The check comes between steps, so an event may also wait out the step after
 * the one that made it (at most a draft-model catch-up, tens of milliseconds, on the tiny pair).
 */
export const FLUSH_INTERVAL_MS = 4;

export class EventOutbox {
  private pending: AddressedEvent[] = [];
  /** Each request's waiting chunk, which its next chunks join. */
  private readonly waitingChunks = new Map<number, { id: number; event: { type: 'chunk'; chunk: GenerationChunk } }>();
  /** Requests whose first event has come (it went out at the next check) and that have not ended. */
  private readonly started = new Set<number>();
  private urgent = false;
  private lastFlush: number;

  constructor(
    private readonly post: (events: AddressedEvent[]) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.lastFlush = now();
  }

  add(id: number, event: WireEvent): void {
    if (event.type === 'chunk') this.addChunk(id, event.chunk);
    else {
      this.pending.push({ id, event });
      this.waitingChunks.delete(id);
      this.started.delete(id);
      this.urgent = true;
    }
  }

  private addChunk(id: number, chunk: GenerationChunk): void {
    const waiting = this.waitingChunks.get(id);
    if (waiting) waiting.event.chunk = joined(waiting.event.chunk, chunk);
    else {
      const entry = { id, event: { type: 'chunk' as const, chunk } };
      this.pending.push(entry);
      this.waitingChunks.set(id, entry);
    }
    if (!this.started.has(id)) {
      this.started.add(id);
      this.urgent = true;
    }
  }

  /** Posts what waits if something is urgent or the interval has passed. */
  flushIfDue(): void {
    if (this.urgent || this.now() - this.lastFlush >= FLUSH_INTERVAL_MS) this.flush();
  }

  /** Posts what waits now (before the loop idles, and before any other message, which must not overtake events). */
  flush(): void {
    this.urgent = false;
    this.lastFlush = this.now();
    if (this.pending.length === 0) return;
    const events = this.pending;
    this.pending = [];
    this.waitingChunks.clear();
    this.post(events);
  }
}

function joined(first: GenerationChunk, next: GenerationChunk): GenerationChunk {
  return {
    tokens: [...first.tokens, ...next.tokens],
    text: first.text + next.text,
    reasoning: first.reasoning + next.reasoning,
    content: first.content + next.content,
    draftedBy: [...first.draftedBy, ...next.draftedBy],
    // Per-token lists that chunks carry when the request asked for them.
    ...(first.pieces || next.pieces ? { pieces: [...(first.pieces ?? []), ...(next.pieces ?? [])] } : {}),
    ...(first.logprobs || next.logprobs ? { logprobs: [...(first.logprobs ?? []), ...(next.logprobs ?? [])] } : {}),
  };
}
