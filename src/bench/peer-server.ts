/**
 * The llama-server helper shared with the plain-script peers (bench/peers/): a plain script, so it
 * is loaded from the package, not compiled. It drains the server's output (a pipe nobody reads
 * fills up, and llama-server then blocks on its next log line) and stops it with the process.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../paths.js';
import type * as LlamaServerModule from '../../bench/peers/llama-server.mjs';

export type LlamaServers = typeof LlamaServerModule;

export async function llamaServers(): Promise<LlamaServers> {
  return (await import(pathToFileURL(join(packageRoot, 'bench', 'peers', 'llama-server.mjs')).href)) as LlamaServers;
}

/**
 * Flags for a llama-server that serves raw completions to a benchmark: no web UI, and no template
 * engine (with it on, llama-server runs raw completions through its chat parser, which costs it
 * throughput and fails a stream whose text ends inside a UTF-8 character, as a random-weight
 * model's lone byte tokens do). Only those its help lists.
 */
export function rawCompletionFlags(servers: LlamaServers, help: string): string[] {
  return ['--no-webui', '--no-jinja'].filter((flag) => servers.helpHasFlag(help, flag));
}
