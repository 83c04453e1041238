/** A Tachyon server on the testbed model, on a free loopback port, for tests that speak HTTP to it. */
import { Engine, type EngineOptions } from '../../src/engine/engine.js';
import { createServer, type ServerOptions, type TachyonServer } from '../../src/server/app.js';
import { testbedTarget } from './models.js';

export const MODEL_ID = 'testbed';

export interface RunningServer {
  engine: Engine;
  server: TachyonServer;
  /** e.g. http://127.0.0.1:41234 */
  url: string;
  close(): Promise<void>;
}

export async function startServer(engineOptions: EngineOptions = {}, serverOptions: Partial<ServerOptions> = {}): Promise<RunningServer> {
  // One thread: on a shared 2-core machine, two threads that wait on each other decode far slower.
  const engine = await Engine.load({ model: testbedTarget, gpu: 'cpu', threads: 1, maxQueued: 64, ...engineOptions });
  const server = await createServer({ engine, modelId: MODEL_ID, maxQueued: engineOptions.maxQueued ?? 64, parallel: engineOptions.maxSequences ?? 8, ...serverOptions });
  const url = await server.app.listen({ host: '127.0.0.1', port: 0 });
  return {
    engine,
    server,
    url,
    async close() {
      await server.shutdown(0);
      await engine.dispose();
    },
  };
}

/** Server-sent events of a raw response body: the `data:` payloads in order. */
export function sseData(body: string): string[] {
  return body
    .split('\n\n')
    .filter((event) => event.startsWith('data: '))
    .map((event) => event.slice('data: '.length));
}

/**
 * Engine options that verify every draft of the drafters within a fixed budget instead of the
 * adaptive planner, which on a CPU finds that drafting the tiny testbed never pays: tests then see
 * accepted drafts. The drafters, decoder and verification are the real ones.
 */
export const verifyEveryDraft: EngineOptions = { draftBudget: { maxNodes: 16, maxDepth: 8, maxBranches: 2 } };
