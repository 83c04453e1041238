/**
 * Finds and loads the prebuilt llama.cpp of `@node-llama-cpp/<platform>[-gpu]@3.21.1`.
 *
 * One variant per process: every variant ships libraries with the same sonames, so a second
 * variant cannot be loaded beside the first.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import koffi from 'koffi';
import { declareApi, LogCallback, ThreadpoolNew, type LlamaApi, type Pointer, type ThreadpoolParamsValue } from './ffi.js';
import { LlamaLogger } from './logger.js';

export type GpuChoice = 'auto' | 'cpu' | 'cuda' | 'vulkan' | 'metal';
export type Backend = 'cpu' | 'cuda' | 'vulkan' | 'metal';

export interface LlamaLibrary {
  readonly api: LlamaApi;
  readonly backend: Backend;
  /** Folder the libraries were loaded from. */
  readonly binDir: string;
  /** Names of the devices ggml found (e.g. "CPU", "CUDA0"). */
  readonly devices: readonly string[];
  /**
   * A persistent CPU thread pool for `threads` threads, shared by every context of the process.
   * Without one, ggml starts and joins fresh threads for every decode, which costs milliseconds per
   * token when the decode runs on a worker thread. Contexts never compute at the same time (decodes
   * are awaited in turn), so one pool per thread count serves them all.
   */
  threadpool(threads: number): Pointer | null;
  /**
   * Error lines llama.cpp logged since the last call to takeErrors(); used to explain failures.
   * Only while this thread is the one using llama.cpp in the process (see logger.ts).
   */
  takeErrors(): string[];
  /** Takes llama.cpp's log back for this thread if it is now the only one using llama.cpp; call before a call whose errors matter. */
  claimLog(): void;
  /**
   * Counts this thread out of llama.cpp's users, leaves llama.cpp's log to a native function that
   * ignores it and releases ours. A thread that loaded the library must call this before it exits:
   * the callbacks are process-wide, and one left pointing into a dead thread's JavaScript crashes
   * the process on the next log line.
   */
  detachLogger(): void;
}

const GGML_BACKEND_DEVICE_TYPE_GPU = 1;
const GGML_BACKEND_DEVICE_TYPE_IGPU = 2;

const require = createRequire(import.meta.url);

function platformPrefix(): string {
  const os = process.platform === 'darwin' ? 'mac' : process.platform === 'win32' ? 'win' : process.platform;
  return `${os}-${process.arch}`;
}

/** Package names to try for a backend, most specific first. */
function packageCandidates(backend: Backend): string[] {
  const prefix = platformPrefix();
  switch (backend) {
    case 'cpu':
      return [`@node-llama-cpp/${prefix}`];
    case 'cuda':
      return [`@node-llama-cpp/${prefix}-cuda`, `@node-llama-cpp/${prefix}-cuda-ext`];
    case 'vulkan':
      return [`@node-llama-cpp/${prefix}-vulkan`];
    case 'metal':
      return [`@node-llama-cpp/${prefix}-metal`, `@node-llama-cpp/${prefix}`];
  }
}

function findBinDir(backend: Backend): string | undefined {
  for (const name of packageCandidates(backend)) {
    // The packages export no package.json, so look in the node_modules folders Node would search.
    for (const nodeModules of require.resolve.paths(name) ?? []) {
      const bins = join(nodeModules, name, 'bins');
      if (!existsSync(bins)) continue;
      for (const sub of readdirSync(bins)) {
        const dir = join(bins, sub);
        if (findLib(dir, 'libllama')) return dir;
      }
    }
  }
  return undefined;
}

/** Variant libraries carry the variant in their name (libllama.cuda.v0.4.0.so). */
function findLib(dir: string, stem: string): string | undefined {
  const pattern = new RegExp(`^${stem}(\\.[a-z]+)?\\.v[0-9.]+\\.(so|dylib|dll)$|^${stem}\\.(so|dylib|dll)$`);
  return readdirSync(dir).find((file) => pattern.test(file));
}

function loadVariant(backend: Backend, binDir: string): LlamaLibrary {
  const load = (stem: string) => {
    const file = findLib(binDir, stem);
    if (!file) throw new Error(`llama.cpp library ${stem} missing in ${binDir}`);
    return koffi.load(join(binDir, file));
  };
  const ggmlBase = load('libggml-base');
  const ggml = load('libggml');
  const llama = load('libllama');
  const api = declareApi(llama, ggml, ggmlBase);

  // ggml_time_init takes no arguments and does nothing after its first call: it stands for the
  // silent logger. This thread is counted in before its first call that can log.
  const silent = koffi.as(ggmlBase.symbol('ggml_time_init', 'char'), koffi.pointer(LogCallback)) as Pointer;
  const logger = new LlamaLogger(api, silent, Boolean(process.env.TACHYON_VERBOSE));
  logger.attach();

  api.backendLoadAllFromPath(binDir);
  api.backendInit();
  const devices = listDevices(api);
  const pools = new Map<number, Pointer | null>();
  return {
    api,
    backend,
    binDir,
    devices: devices.map((d) => d.name),
    threadpool(threads: number) {
      if (!pools.has(threads)) pools.set(threads, createThreadpool(api, threads));
      return pools.get(threads) ?? null;
    },
    takeErrors: () => logger.takeErrors(),
    claimLog: () => logger.claimIfAlone(),
    detachLogger: () => logger.detach(),
  };
}

const GGML_BACKEND_DEVICE_TYPE_CPU = 0;
/** Polling level of pool threads between graphs (llama.cpp's own default): low latency per token. */
const THREADPOOL_POLL = 50;

function createThreadpool(api: LlamaApi, threads: number): Pointer | null {
  const cpu = api.backendDevByType(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (!cpu) return null;
  const address = api.backendRegGetProcAddress(api.backendDevBackendReg(cpu), 'ggml_threadpool_new');
  if (!address) return null;
  const threadpoolNew = koffi.decode(address, ThreadpoolNew) as (params: ThreadpoolParamsValue) => Pointer | null;
  const params = api.threadpoolParamsDefault(threads);
  params.poll = THREADPOOL_POLL;
  return threadpoolNew(params);
}

interface DeviceInfo {
  name: string;
  isGpu: boolean;
}

function listDevices(api: LlamaApi): DeviceInfo[] {
  const devices: DeviceInfo[] = [];
  const count = Number(api.backendDevCount());
  for (let i = 0; i < count; i++) {
    const dev: Pointer = api.backendDevGet(i);
    const type = api.backendDevType(dev);
    devices.push({ name: api.backendDevName(dev), isGpu: type === GGML_BACKEND_DEVICE_TYPE_GPU || type === GGML_BACKEND_DEVICE_TYPE_IGPU });
  }
  return devices;
}

export class LibraryError extends Error {
  override name = 'LibraryError';
}

let loaded: LlamaLibrary | undefined;

/** Counts this thread out of llama.cpp's users if it loaded llama.cpp (see LlamaLibrary.detachLogger). */
export function detachLlamaLogger(): void {
  loaded?.detachLogger();
  loaded = undefined;
}

/**
 * Loads llama.cpp once per thread (an Engine loads it in its worker only). `auto` tries the GPU variants that are installed and that find
 * a GPU, and falls back to the CPU build with a one-line notice (through `notice`).
 */
export function loadLlamaLibrary(gpu: GpuChoice = 'auto', notice: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): LlamaLibrary {
  if (loaded) {
    if (gpu !== 'auto' && gpu !== loaded.backend) {
      throw new LibraryError(`llama.cpp is already loaded with the ${loaded.backend} backend in this process; cannot switch to ${gpu}`);
    }
    return loaded;
  }
  loaded = gpu === 'auto' ? loadAuto(notice) : loadExplicit(gpu);
  return loaded;
}

function loadExplicit(backend: Backend): LlamaLibrary {
  const binDir = findBinDir(backend);
  if (!binDir) {
    throw new LibraryError(`no prebuilt llama.cpp for --gpu ${backend} on ${platformPrefix()}: install ${packageCandidates(backend)[0]}@3.21.1`);
  }
  const library = loadVariant(backend, binDir);
  if (backend !== 'cpu' && !hasGpu(library)) {
    throw new LibraryError(`--gpu ${backend}: the ${backend} build loaded but found no GPU device`);
  }
  return library;
}

function hasGpu(library: LlamaLibrary): boolean {
  return listDevices(library.api).some((d) => d.isGpu);
}

function loadAuto(notice: (line: string) => void): LlamaLibrary {
  const gpuBackends: Backend[] = process.platform === 'darwin' ? ['metal'] : ['cuda', 'vulkan'];
  for (const backend of gpuBackends) {
    const binDir = findBinDir(backend);
    if (!binDir || !gpuDriverPresent(backend)) continue;
    try {
      const library = loadVariant(backend, binDir);
      if (hasGpu(library)) return library;
      // Loaded but no device: the process now holds this variant, so keep it (it runs on CPU too).
      notice(`tachyon: no ${backend} device found; running on CPU`);
      return library;
    } catch {
      continue;
    }
  }
  const binDir = findBinDir('cpu');
  if (!binDir) throw new LibraryError(`no prebuilt llama.cpp found for ${platformPrefix()}: install @node-llama-cpp/${platformPrefix()}@3.21.1`);
  if (process.platform !== 'darwin') notice('tachyon: no GPU backend available; running on CPU');
  return loadVariant('cpu', binDir);
}

/**
 * Checks for the GPU driver before loading a GPU variant: once a variant's libraries are in the
 * process, the CPU variant can no longer be loaded, so we must not load one that cannot work.
 */
function gpuDriverPresent(backend: Backend): boolean {
  if (backend === 'metal') return true;
  const candidates =
    backend === 'cuda'
      ? ['/usr/lib/x86_64-linux-gnu/libcuda.so.1', '/usr/lib64/libcuda.so.1', '/usr/lib/wsl/lib/libcuda.so.1', '/usr/local/nvidia/lib64/libcuda.so.1']
      : ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/usr/lib64/libvulkan.so.1'];
  if (backend === 'vulkan' && !existsSync('/dev/dri')) return false;
  return candidates.some((file) => existsSync(file)) || libraryOnLdPath(backend === 'cuda' ? 'libcuda.so.1' : 'libvulkan.so.1');
}

function libraryOnLdPath(file: string): boolean {
  const dirs = (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  return dirs.some((dir) => existsSync(join(dir, file)));
}
