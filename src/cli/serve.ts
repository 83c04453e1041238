/** `tachyon serve`: the OpenAI-compatible HTTP server over one engine. */
import { basename } from 'node:path';
import { Option, type Command } from 'commander';
import { Engine } from '../engine/engine.js';
import { DEFAULT_PREFILL_STRETCH } from '../engine/prefill-pacer.js';
import { createServer } from '../server/app.js';
import { addModelFlags, engineOptions, type ModelFlags } from './engine-options.js';
import { decimal, integer } from './options.js';
import { UsageError } from './errors.js';
import { SPECULATION_MODES, type SpeculationMode } from '../speculative/speculation.js';

interface ServeFlags extends ModelFlags {
  draftModel?: string;
  host: string;
  port: number;
  apiKey?: string;
  parallel: number;
  maxQueued: number;
  alias?: string;
  cors?: string | boolean;
  timeout: number;
  grace: number;
  spec: SpeculationMode;
  kv: KvLayout;
  prefillStretch: number;
}

const KV_LAYOUTS = ['auto', 'unified', 'per-sequence'] as const;
type KvLayout = (typeof KV_LAYOUTS)[number];

export function registerServe(program: Command): void {
  const command = program.command('serve').description('serve the model over an OpenAI-compatible HTTP API, with a playground at /');
  addModelFlags(command)
    .option('--draft-model <path>', 'draft GGUF with the same vocabulary, for draft-model speculation')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0 = any free port)', integer(0, 65535), 8080)
    .option('--api-key <key>', 'require "Authorization: Bearer <key>" on everything but /health and the playground page (default: $TACHYON_API_KEY)')
    .option('--parallel <n>', 'requests generating at once (--ctx-size is per request)', integer(1, 256), 8)
    .option('--max-queued <n>', 'requests that may wait for a turn; more get 429', integer(0), 64)
    .option('--alias <name>', 'model id clients use (default: the model file name without .gguf)')
    .option('--cors [origin]', 'allow browser clients from this origin (default with the flag: any)')
    .option('--timeout <seconds>', 'longest a request may take, waiting included', integer(1), 600)
    .addOption(new Option('--spec <mode>', 'speculative decoding of every request (lossless)').choices([...SPECULATION_MODES]).default('auto'))
    .addOption(
      new Option('--kv <layout>', 'KV cache layout: one buffer shared by all requests (the prefix cache needs it, and speculation\'s token trees branch only there), or a buffer per request as llama-server keeps by default (attention reads only the request\'s own cells: faster with many long requests; speculation verifies single chains; needs --cache off); auto: per-sequence when neither speculation nor the cache is on')
        .choices([...KV_LAYOUTS])
        .default('auto'),
    )
    .option('--prefill-stretch <x>', 'while requests generate, a step that also prefills a new prompt may take this many times a step without (lower: steadier streams, later first tokens for new prompts)', decimal(1.1), DEFAULT_PREFILL_STRETCH)
    .option('--grace <seconds>', 'on SIGINT/SIGTERM, how long in-flight requests may finish before they are cancelled', integer(0), 30)
    .action(async (flags: ServeFlags) => serveCommand(flags));
}

async function serveCommand(flags: ServeFlags): Promise<void> {
  if (flags.kv === 'per-sequence' && flags.cache !== 'off') throw new UsageError('--kv per-sequence needs --cache off (cached blocks share cells between sequences)');
  const prefersUnified = flags.spec !== 'off' || flags.cache !== 'off' || flags.draftModel !== undefined;
  const engine = await Engine.load({
    ...engineOptions(flags),
    draftModel: flags.draftModel,
    maxSequences: flags.parallel,
    maxQueued: flags.maxQueued,
    prefillStretch: flags.prefillStretch,
    unifiedKv: flags.kv === 'unified' || (flags.kv === 'auto' && prefersUnified),
  });
  const modelId = flags.alias ?? basename(flags.model).replace(/\.gguf$/i, '');
  const server = await createServer({
    engine,
    modelId,
    // Read here, not as the flag's default, so --help never prints the key.
    apiKey: flags.apiKey ?? process.env.TACHYON_API_KEY,
    cors: flags.cors,
    parallel: flags.parallel,
    maxQueued: flags.maxQueued,
    requestTimeoutMs: flags.timeout * 1000,
    speculation: flags.spec,
    onServerError: (error, request) => process.stderr.write(`tachyon: ${request.method} ${request.url} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`),
  });
  const address = await server.app.listen({ host: flags.host, port: flags.port }).catch(async (error: unknown) => {
    // The process exits on this error: the worker ends first (see stop below).
    await engine.dispose();
    throw error;
  });
  process.stdout.write(`tachyon: serving ${modelId} at ${address} (OpenAI API under ${address}/v1, playground at ${address}/)\n`);
  const stop = async (signal: string) => {
    process.stderr.write(`tachyon: ${signal}: no new requests; in-flight ones have ${flags.grace} s to finish\n`);
    await server.shutdown(flags.grace * 1000);
    // The worker ends first: exiting under it would tear down a thread that still uses llama.cpp.
    await engine.dispose();
    process.exit(0);
  };
  process.once('SIGINT', (signal) => void stop(signal));
  process.once('SIGTERM', (signal) => void stop(signal));
}
