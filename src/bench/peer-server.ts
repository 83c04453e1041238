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

/** A llama-server binary found (or built once by bench/peers/build-llama-cpp.sh), with its help text and version. */
export interface LocatedPeer {
  servers: LlamaServers;
  path: string;
  help: string;
  version: string | null;
}

export async function locatePeer(binary: string | undefined, log: (line: string) => void): Promise<LocatedPeer> {
  const servers = await llamaServers();
  const { path } = servers.locateLlamaServer({ server: binary, log });
  return { servers, path, help: servers.serverHelp(path), version: servers.serverVersion(path) };
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
