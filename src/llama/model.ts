/** A loaded GGUF model: metadata, vocabulary and tokenizer. */
import { stat } from 'node:fs/promises';
import koffi from 'koffi';
import { readGgufHeader } from '../gguf/reader.js';
import { ProgressCallback, type Pointer } from './ffi.js';
import { loadLlamaLibrary, type GpuChoice, type LlamaLibrary } from './library.js';
import { Tokenizer } from './tokenizer.js';

export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
}

export interface LoadModelOptions {
  /** Which llama.cpp build to use (first load in the process decides). */
  gpu?: GpuChoice;
  /** Layers to offload to the GPU; default all when a GPU backend is loaded. */
  gpuLayers?: number;
  /** Called with the fraction loaded, 0..1. */
  onProgress?: (fraction: number) => void;
  /** Receives one-line notices such as the CPU fallback of `gpu: 'auto'`. */
  onNotice?: (line: string) => void;
}

export interface SpecialTokens {
  bos: number;
  eos: number;
  /** End of turn; -1 when the model has none. */
  eot: number;
  addBos: boolean;
}

export interface ModelMetadata {
  architecture: string;
  name: string;
  description: string;
  contextLength: number;
  embeddingSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocabularySize: number;
  parameters: number;
  sizeBytes: number;
  chatTemplate: string | undefined;
  specialTokens: SpecialTokens;
}

export class Model {
  readonly tokenizer: Tokenizer;
  readonly metadata: ModelMetadata;
  private handle: Pointer | null;

  private constructor(
    readonly library: LlamaLibrary,
    handle: Pointer,
    readonly path: string,
  ) {
    this.handle = handle;
    const vocab = library.api.modelGetVocab(handle);
    this.tokenizer = new Tokenizer(library.api, vocab);
    this.metadata = readMetadata(library, handle, this.tokenizer);
  }

  /**
   * Loads a GGUF model off the event loop. The file is checked in TypeScript first (magic, version,
   * tensor data within the file), so a corrupt file gets a clear error instead of reaching llama.cpp.
   */
  static async load(path: string, options: LoadModelOptions = {}): Promise<Model> {
    await checkModelFile(path);
    const library = loadLlamaLibrary(options.gpu ?? 'auto', options.onNotice);
    const params = library.api.modelDefaultParams();
    params.n_gpu_layers = library.backend === 'cpu' ? 0 : (options.gpuLayers ?? -1);
    const progress = options.onProgress;
    const callback = progress
      ? koffi.register((fraction: number) => {
          progress(fraction);
          return true;
        }, koffi.pointer(ProgressCallback))
      : null;
    params.progress_callback = callback;
    library.claimLog();
    library.takeErrors();
    try {
      const handle = await callAsync(library.api.modelLoadFromFile, path, params);
      if (!handle) throw new ModelLoadError(`cannot load model ${path}: ${explain(library.takeErrors())}`);
      return new Model(library, handle, path);
    } finally {
      if (callback) koffi.unregister(callback);
    }
  }

  /** The native pointer; throws once disposed. */
  get pointer(): Pointer {
    if (!this.handle) throw new Error('model is disposed');
    return this.handle;
  }

  get disposed(): boolean {
    return this.handle === null;
  }

  /** Frees the weights now. Contexts of this model must be disposed first. */
  dispose(): void {
    if (!this.handle) return;
    this.library.api.modelFree(this.handle);
    this.handle = null;
  }
}

async function checkModelFile(path: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new ModelLoadError(`model file not found: ${path}`);
  if (!info.isFile()) throw new ModelLoadError(`model path is not a file: ${path}`);
  try {
    await readGgufHeader(path);
  } catch (error) {
    throw new ModelLoadError(`${path}: ${(error as Error).message}`);
  }
}

function explain(errors: string[]): string {
  const architecture = errors.find((line) => /architecture/i.test(line));
  if (architecture) return architecture.replace(/^.*?: /, '');
  return errors.at(-1) ?? 'llama.cpp refused the file';
}

/** Promisifies a koffi `.async` call. */
export function callAsync<Args extends unknown[], R>(
  fn: { async: (...args: [...Args, (err: unknown, result: R) => void]) => void },
  ...args: Args
): Promise<R> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (err: unknown, result: R) => (err ? reject(err) : resolve(result)));
  });
}

function metaString(library: LlamaLibrary, model: Pointer, key: string): string | undefined {
  let buffer = Buffer.alloc(256);
  let length = library.api.modelMetaValStr(model, key, buffer, buffer.length);
  if (length < 0) return undefined;
  if (length >= buffer.length) {
    buffer = Buffer.alloc(length + 1);
    length = library.api.modelMetaValStr(model, key, buffer, buffer.length);
  }
  return buffer.subarray(0, length).toString('utf8');
}

function readMetadata(library: LlamaLibrary, model: Pointer, tokenizer: Tokenizer): ModelMetadata {
  const { api } = library;
  const architecture = metaString(library, model, 'general.architecture') ?? 'unknown';
  const description = Buffer.alloc(256);
  const descriptionLength = api.modelDesc(model, description, description.length);
  return {
    architecture,
    name: metaString(library, model, 'general.name') ?? '',
    description: description.subarray(0, Math.max(0, Math.min(descriptionLength, 255))).toString('utf8'),
    contextLength: api.modelNCtxTrain(model),
    embeddingSize: api.modelNEmbd(model),
    layers: api.modelNLayer(model),
    heads: api.modelNHead(model),
    kvHeads: api.modelNHeadKv(model),
    vocabularySize: tokenizer.vocabularySize,
    parameters: Number(api.modelNParams(model)),
    sizeBytes: Number(api.modelSize(model)),
    chatTemplate: api.modelChatTemplate(model, null) ?? undefined,
    specialTokens: tokenizer.special,
  };
}
