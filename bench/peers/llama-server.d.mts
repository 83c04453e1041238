// Types of llama-server.mjs, for the TypeScript benchmarks that start llama-server as a peer.

export declare const HOST: string;

export declare function stopAllServers(): void;

export interface LocatedServer {
  path: string;
  /** build-llama-cpp.sh's build-info.json, when it built the binary. */
  build: Record<string, unknown> | null;
}

export declare function locateLlamaServer(options?: { server?: string; log?: (message: string) => void }): LocatedServer;

export declare function serverHelp(bin: string): string;

export declare function helpHasFlag(help: string, flag: string): boolean;

export declare function serverVersion(bin: string): string | null;

export interface LlamaServerOptions {
  log?: (message: string) => void;
  logDir?: string | null;
  startTimeoutS?: number;
  requestTimeoutS?: number;
}

export declare class LlamaServer {
  constructor(bin: string, name: string, flags: readonly string[], options?: LlamaServerOptions);
  readonly url: string;
  start(): Promise<LlamaServer>;
  post(path: string, body: unknown): Promise<unknown>;
  stop(): Promise<void>;
}

export declare function parseSpecTypes(help: string): string[];

export interface SpecConfig {
  name: string;
  flags: string[];
}

export declare function specConfigs(help: string, options: { draftModel?: string | null; threads: number; draftNMax?: number | null; log?: (message: string) => void }): SpecConfig[];
