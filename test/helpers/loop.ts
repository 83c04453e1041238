/** Drives an in-process EngineLoop (no worker) for tests that bring their own decoders. */
import type { Context } from '../../src/llama/context.js';
import { EngineLoop, type DecoderSource, type EngineLoopOptions } from '../../src/engine/loop.js';
import type { RequestOptions } from '../../src/engine/request.js';
import type { SequenceDecoder } from '../../src/generate/decoder.js';
import type { GenerationResult } from '../../src/generate/generate.js';
import type { Sampler } from '../../src/generate/sampling.js';

/** Every request gets a decoder from `make` (any mode). */
export function decoderSource(make: (sampler: Sampler, seq: number) => SequenceDecoder): DecoderSource {
  return { check: () => {}, decoder: async (_mode, sampler, seq) => make(sampler, seq) };
}

export interface LoopRequest {
  prompt: readonly number[];
  options?: RequestOptions;
}

/** Runs the requests concurrently in one loop until all end; results in request order. */
export async function runLoop(context: Context, source: DecoderSource, requests: readonly LoopRequest[], options: EngineLoopOptions = {}): Promise<GenerationResult[]> {
  const loop = new EngineLoop(context, context.model.tokenizer, source, options);
  try {
    return await drive(loop, requests);
  } finally {
    loop.dispose();
  }
}

/** Submits the requests to a loop and steps it until they end. */
export async function drive(loop: EngineLoop, requests: readonly LoopRequest[]): Promise<GenerationResult[]> {
  const results: GenerationResult[] = [];
  const errors: unknown[] = [];
  requests.forEach(({ prompt, options }, i) =>
    loop.submit(1000 + i, prompt, options ?? {}, (event) => {
      if (event.type === 'done') results[i] = event.result;
      if (event.type === 'error') errors.push(event.error);
    }),
  );
  while (!loop.idle) await loop.step();
  if (errors.length > 0) throw errors[0];
  return results;
}

/** One request alone. */
export async function runSolo(context: Context, make: (sampler: Sampler, seq: number) => SequenceDecoder, prompt: readonly number[], options: RequestOptions): Promise<GenerationResult> {
  const [result] = await runLoop(context, decoderSource(make), [{ prompt, options }]);
  return result;
}
