/**
 * Child-process side of the benchmarks (started by child.ts, never imported). Reads one job as JSON
 * on stdin, prints one result line on stdout, exits. Only one llama.cpp binding is loaded here:
 * Tachyon's (koffi) or node-llama-cpp's, never both.
 */
import { Engine, type EngineOptions } from '../engine/engine.js';
import type { GpuChoice } from '../llama/library.js';
import { ERROR_PREFIX, RESULT_PREFIX, type DecodeJob, type DecodeResult, type GreedyJob, type GreedyResult, type Job } from './child.js';

/** Prompt text of the decode benchmark: repeated until the prompt has the requested length. */
const PARAGRAPH =
  'The lighthouse keeper climbed the spiral stairs every evening at dusk, counting the steps as his father had taught him. ' +
  'From the lamp room he could see the fishing boats returning to the harbour, their lanterns swaying like small stars on the dark water. ' +
  'He wrote the weather in a worn notebook: the wind from the north-west, seven knots, a light rain expected before midnight. ';

/** BOS (when the model wants one), then the paragraph's tokens repeated, cut to `length` tokens. */
async function benchPrompt(engine: Engine, length: number): Promise<number[]> {
  const { bos, addBos } = engine.info.model.specialTokens;
  const tokens = await engine.tokenize(PARAGRAPH);
  const body = addBos && tokens[0] === bos ? tokens.slice(1) : tokens;
  if (body.length === 0) throw new Error('the model tokenizes the benchmark paragraph to nothing');
  const prompt: number[] = addBos && bos >= 0 ? [bos] : [];
  while (prompt.length < length) prompt.push(...body.slice(0, length - prompt.length));
  return prompt;
}

interface Timed {
  generated: number[];
  firstTokenMs: number;
  decodeMs: number;
}

function rates(promptLength: number, timed: Timed) {
  return {
    prefillTps: (promptLength / timed.firstTokenMs) * 1000,
    decodeTps: timed.generated.length > 1 ? ((timed.generated.length - 1) / timed.decodeMs) * 1000 : Number.NaN,
  };
}

/** Runs `use` on a loaded engine and disposes it after: the process exits on the result, and exiting under a live worker can abort. */
async function withEngine<T>(options: EngineOptions, use: (engine: Engine, loadMs: number) => Promise<T>): Promise<T> {
  const loadStart = performance.now();
  const engine = await Engine.load({ ...options, onNotice: () => {} });
  try {
    return await use(engine, performance.now() - loadStart);
  } finally {
    await engine.dispose();
  }
}

function tachyonDecode(job: DecodeJob): Promise<DecodeResult> {
  const options = { model: job.model, gpu: job.gpu, threads: job.threads, contextSize: job.contextSize, batchSize: job.batchSize };
  return withEngine(options, (engine, loadMs) => timeTachyon(engine, loadMs, job));
}

async function timeTachyon(engine: Engine, loadMs: number, job: DecodeJob): Promise<DecodeResult> {
  const prompt = job.prompt ?? (await benchPrompt(engine, job.promptLength));
  const limits = { temperature: 0, ignoreEos: true, speculation: job.speculation };
  if (job.warmupTokens > 0) await engine.complete(prompt, { ...limits, maxTokens: job.warmupTokens });

  // The product's generation loop (Engine → generate → decoder → Sampler; PlainDecoder with
  // speculation off), timed from outside the same way as the peer's.
  const iterator = engine.generate(prompt, { ...limits, maxTokens: job.tokens });
  const generated: number[] = [];
  const started = performance.now();
  let firstAt = 0;
  let lastAt = 0;
  for (;;) {
    const step = await iterator.next();
    if (step.done) {
      const stats = step.value.stats;
      return {
        side: 'tachyon',
        backend: engine.info.backend,
        devices: [...engine.info.devices],
        prompt,
        generated,
        loadMs,
        firstTokenMs: firstAt - started,
        decodeMs: lastAt - firstAt,
        ...rates(prompt.length, { generated, firstTokenMs: firstAt - started, decodeMs: lastAt - firstAt }),
        reported: {
          prefillTps: stats.prefillTokensPerSecond,
          decodeTps: stats.decodeTokensPerSecond,
          samplingMs: stats.timings.samplingMs,
          verifyMs: stats.timings.verifyMs,
        },
      };
    }
    if (step.value.tokens.length === 0) continue;
    const now = performance.now();
    if (generated.length === 0) firstAt = now;
    generated.push(...step.value.tokens);
    lastAt = now;
  }
}

function peerGpu(gpu: GpuChoice): false | 'auto' | 'cuda' | 'vulkan' | 'metal' {
  return gpu === 'cpu' ? false : gpu;
}

async function peerDecode(job: DecodeJob): Promise<DecodeResult> {
  if (!job.prompt) throw new Error('the peer needs the prompt tokens');
  const prompt = job.prompt;
  type Token = import('node-llama-cpp').Token;
  const peerPrompt = prompt as Token[];
  let nlc: typeof import('node-llama-cpp');
  try {
    nlc = await import('node-llama-cpp');
  } catch {
    throw new Error('node-llama-cpp is not installed');
  }
  const loadStart = performance.now();
  // As a node-llama-cpp user would: prebuilt binaries only, the same thread count as Tachyon.
  const llama = await nlc.getLlama({ gpu: peerGpu(job.gpu), build: 'never', logLevel: nlc.LlamaLogLevel.error, maxThreads: job.threads });
  const model = await llama.loadModel({ modelPath: job.model, ...(job.gpu === 'cpu' ? {} : { gpuLayers: 'max' as const }) });
  const context = await model.createContext({ contextSize: job.contextSize, batchSize: job.batchSize, threads: job.threads, sequences: 1 });
  const sequence = context.getSequence();
  const loadMs = performance.now() - loadStart;
  const options = { temperature: 0, yieldEogToken: true };

  if (job.warmupTokens > 0) {
    let count = 0;
    for await (const token of sequence.evaluate(peerPrompt, options)) {
      void token;
      if (++count >= job.warmupTokens) break;
    }
    await sequence.clearHistory();
  }

  const generated: number[] = [];
  const started = performance.now();
  let firstAt = 0;
  let lastAt = 0;
  for await (const token of sequence.evaluate(peerPrompt, options)) {
    const now = performance.now();
    if (generated.length === 0) firstAt = now;
    generated.push(token);
    lastAt = now;
    if (generated.length >= job.tokens) break;
  }
  const timed = { generated, firstTokenMs: firstAt - started, decodeMs: lastAt - firstAt };
  return {
    side: 'peer',
    backend: llama.gpu === false ? 'cpu' : llama.gpu,
    devices: await llama.getGpuDeviceNames().catch(() => []),
    prompt,
    loadMs,
    ...timed,
    ...rates(prompt.length, timed),
  };
}

function greedy(job: GreedyJob): Promise<GreedyResult> {
  return withEngine({ model: job.model, gpu: job.gpu, threads: job.threads }, async (engine) => {
    const outputs: number[][] = [];
    const decodeTps: number[] = [];
    for (const text of job.prompts) {
      const result = await engine.complete(await engine.userPrompt(text), { temperature: 0, maxTokens: job.tokens, ignoreEos: true, speculation: job.speculation });
      outputs.push(result.tokens);
      decodeTps.push(result.stats.decodeTokensPerSecond);
    }
    return { backend: engine.info.backend, devices: [...engine.info.devices], outputs, decodeTps };
  });
}

async function readStdin(): Promise<string> {
  let text = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) text += chunk as string;
  return text;
}

async function main(): Promise<void> {
  try {
    const job = JSON.parse(await readStdin()) as Job;
    const result = job.kind === 'greedy' ? await greedy(job) : job.side === 'peer' ? await peerDecode(job) : await tachyonDecode(job);
    process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`, () => process.exit(0));
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).split('\n')[0];
    process.stdout.write(`${ERROR_PREFIX}${message}\n`, () => process.exit(1));
  }
}

await main();
