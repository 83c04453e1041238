/**
 * A long prompt admitted among running streams: what chunked prefill is for. Some streams decode
 * steadily; a long prompt arrives; the streams' inter-token latency while it is prefilled is
 * compared with their own steady median, and the prompt's time to first token with its prefill
 * alone on the same target. Any LoadTarget (the engine in process, an HTTP server) runs it.
 */
import type { LoadRequest, LoadTarget } from './load.js';
import { median, percentile } from './stats.js';

export interface AdmissionRequests {
  /** The running streams' requests (one that ends is sent again). */
  streams: readonly LoadRequest[];
  /** The long prompt admitted among them (maxTokens 1). */
  admitted: LoadRequest;
  /** A prompt as long, but sharing no prefix with `admitted`, prefilled alone first (maxTokens 1). */
  solo: LoadRequest;
}

export interface AdmissionResult {
  streams: number;
  /** Times a stream ended or failed and was started again (its prompt's prefill then shared the steps too). */
  stream_restarts: number;
  /** The streams' median inter-token latency before the prompt arrived. */
  steady_itl_p50_ms: number;
  /** Their inter-token latencies from the prompt's arrival to its first token. */
  admission_itl_p50_ms: number;
  admission_itl_p99_ms: number;
  /** admission p99 / steady median (target ≤ 2). */
  itl_p99_vs_steady: number;
  ttft_ms: number;
  solo_ttft_ms: number;
  /** The prompt's TTFT among the streams / alone (target ≤ 1.5). */
  ttft_vs_solo: number;
}

/** Tokens each stream receives before the long prompt is sent (its steady median is measured on them). */
const STEADY_TOKENS = 24;
/** Restarts of one stream that mean the target is failing, not that its streams end now and then. */
const MAX_RESTARTS = 50;

/**
 * One stream's token arrival times (ms, performance.now()), one list per run of its request: a
 * stream that ends (end of text) or fails (llama-server fails a stream whose text ends inside a
 * UTF-8 character, as a random-weight model's does) starts again at once, so the given number
 * keeps running; gaps are taken within a run only.
 */
interface StreamClock {
  runs: number[][];
  restarts: number;
}

export async function runAdmission(target: LoadTarget, requests: AdmissionRequests): Promise<AdmissionResult> {
  const solo = await timeToFirstToken(target, requests.solo);
  const controller = new AbortController();
  const clocks = requests.streams.map((): StreamClock => ({ runs: [], restarts: 0 }));
  const running = requests.streams.map((request, i) => follow(target, request, clocks[i], controller.signal));
  try {
    const healthy = () => {
      if (clocks.some((clock) => clock.restarts > MAX_RESTARTS)) throw new Error(`${target.name}: a stream failed or ended ${MAX_RESTARTS} times`);
    };
    await until(() => {
      healthy();
      return clocks.every((clock) => clock.runs.reduce((sum, run) => sum + run.length, 0) >= STEADY_TOKENS);
    });
    const sent = performance.now();
    const ttft = await timeToFirstToken(target, requests.admitted);
    const firstToken = sent + ttft;
    healthy();
    const steady = clocks.flatMap((clock) => clock.runs.flatMap((run) => gaps(run, -Infinity, sent)));
    const admission = clocks.flatMap((clock) => clock.runs.flatMap((run) => gaps(run, sent, firstToken)));
    const steadyMedian = median(steady);
    const p99 = percentile(admission, 99);
    return {
      streams: requests.streams.length,
      stream_restarts: clocks.reduce((sum, clock) => sum + clock.restarts, 0),
      steady_itl_p50_ms: steadyMedian,
      admission_itl_p50_ms: percentile(admission, 50),
      admission_itl_p99_ms: p99,
      itl_p99_vs_steady: p99 / steadyMedian,
      ttft_ms: ttft,
      solo_ttft_ms: solo,
      ttft_vs_solo: ttft / solo,
    };
  } finally {
    controller.abort();
    await Promise.allSettled(running);
  }
}

/** Until the first token, or the end of a one-token request whose token had no text (an HTTP stream sends no piece for it). */
async function timeToFirstToken(target: LoadTarget, request: LoadRequest): Promise<number> {
  const sent = performance.now();
  for await (const _ of target.stream(request, new AbortController().signal)) return performance.now() - sent;
  return performance.now() - sent;
}

/** Runs a stream again and again until aborted, recording when each token arrives (never rejects). */
async function follow(target: LoadTarget, request: LoadRequest, clock: StreamClock, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    const arrivals: number[] = [];
    clock.runs.push(arrivals);
    try {
      for await (const { tokens } of target.stream(request, signal)) {
        const now = performance.now();
        for (let k = 0; k < tokens; k++) arrivals.push(now);
      }
    } catch {
      // Failed: counted as a restart below, like a stream that ended.
    }
    if (!signal.aborted) clock.restarts++;
  }
}

/** Gaps between consecutive arrivals that end within (from, to]. */
function gaps(arrivals: readonly number[], from: number, to: number): number[] {
  const result: number[] = [];
  for (let i = 1; i < arrivals.length; i++) if (arrivals[i] > from && arrivals[i] <= to) result.push(arrivals[i] - arrivals[i - 1]);
  return result;
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}
