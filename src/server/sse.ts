/**
 * Server-sent events over a raw Node response, with bounded buffering: a reader that stops
 * reading gets what the socket buffers, then `drainTimeoutMs` to catch up, then its request is
 * cancelled, so one slow client never holds the engine.
 */
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';

export class SlowReaderError extends Error {
  override name = 'SlowReaderError';
}

export class SseStream {
  constructor(
    private readonly response: ServerResponse,
    private readonly drainTimeoutMs: number,
  ) {}

  /** Sends the 200 with the headers the framework had set (CORS). */
  open(headers: Record<string, string | number | string[] | undefined>): void {
    this.response.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
    this.response.flushHeaders();
  }

  get closed(): boolean {
    return this.response.destroyed || this.response.writableEnded;
  }

  /** Sends one event; waits while the reader is behind, and throws SlowReaderError when it stays behind. */
  async send(data: unknown): Promise<void> {
    if (this.closed) return;
    if (this.response.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`)) return;
    const waiting = new AbortController();
    const drained = await Promise.race([
      once(this.response, 'drain', { signal: waiting.signal }).then(() => true),
      once(this.response, 'close', { signal: waiting.signal }).then(() => true),
      new Promise<false>((resolve) => setTimeout(resolve, this.drainTimeoutMs, false).unref()),
    ]).finally(() => waiting.abort());
    if (!drained) {
      this.response.destroy();
      throw new SlowReaderError(`the client read nothing for ${this.drainTimeoutMs} ms with its buffer full`);
    }
  }

  end(): void {
    if (!this.closed) this.response.end();
  }
}
