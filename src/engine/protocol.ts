/** Messages between the Engine (main thread) and its worker. Plain data only. */
import type { MessagePort } from 'node:worker_threads';
import type { ChatMessage } from '../generate/chat.js';
import type { ContextOptions } from '../llama/context.js';
import type { ModelMetadata } from '../llama/model.js';
import type { GpuChoice } from '../llama/library.js';
import type { GenerationChunk, GenerationResult } from '../generate/generate.js';
import type { SerializedError } from './errors.js';
import type { EngineLoopOptions, EngineStatus } from './loop.js';
import type { RequestOptions } from './request.js';
import type { DraftBudget, TreeShape } from '../speculative/tree.js';
import type { EngineCacheOptions } from './engine.js';

/** What the worker needs to load (the EngineOptions without callbacks). */
export interface WorkerOptions extends ContextOptions, EngineLoopOptions {
  model: string;
  draftModel?: string;
  gpu?: GpuChoice;
  gpuLayers?: number;
  /** Positions one request may use (the context holds `kvCells` cells for all of them). */
  contextSize?: number;
  kvCells?: number;
  draftBudget?: DraftBudget;
  cache?: EngineCacheOptions;
  chatTemplate?: string;
  reportProgress: boolean;
}

export interface WorkerData {
  options: WorkerOptions;
  /** Commands arrive here; the loop drains it between steps with receiveMessageOnPort. */
  commands: MessagePort;
  /**
   * The loop's status, written after every step as float64s in STATUS_FIELDS order (a running
   * total of shared tokens outgrows an int32 on a long-lived server).
   */
  status: SharedArrayBuffer;
  /** The threads of the process that use llama.cpp count themselves here (llama/logger.ts). */
  llamaThreads: SharedArrayBuffer;
}

/** A prompt as it crosses to the worker; text gets BOS (if the model wants it) unless `addSpecial` is false. */
export type PromptInput = { kind: 'text'; text: string; addSpecial?: boolean } | { kind: 'tokens'; tokens: number[] } | { kind: 'messages'; messages: ChatMessage[] };

export type Query =
  | { method: 'tokenize'; prompt: PromptInput }
  | { method: 'detokenize'; tokens: number[]; each: boolean }
  | { method: 'kvAudit' }
  | { method: 'cacheStats' }
  | { method: 'logitsAfter'; prompt: number[]; continuation: number[] }
  | { method: 'rowAlongTrees'; prompt: number[]; output: number[]; trees: TreeShape[]; at: number }
  | { method: 'branchRows'; sequence: number[]; branches: { at: number; tokens: number[] }[] }
  | { method: 'costCurve' };

export type Command =
  | { type: 'generate'; id: number; prompt: PromptInput; options: RequestOptions }
  | { type: 'cancel'; id: number }
  | { type: 'query'; id: number; query: Query }
  | { type: 'dispose' };

export interface EngineInfo {
  model: ModelMetadata;
  modelPath: string;
  backend: string;
  devices: string[];
  /** Positions one request may use, prompt included. */
  contextSize: number;
  /** KV cells shared by all requests. */
  kvCells: number;
  maxSequences: number;
}

export type WireEvent = { type: 'chunk'; chunk: GenerationChunk } | { type: 'done'; result: GenerationResult } | { type: 'error'; error: SerializedError };

/** An event of the request with this id. */
export interface AddressedEvent {
  id: number;
  event: WireEvent;
}

export type WorkerMessage =
  | { type: 'progress'; fraction: number }
  | { type: 'notice'; line: string }
  | { type: 'measuring' }
  | { type: 'ready'; info: EngineInfo }
  | { type: 'failed'; error: SerializedError }
  /** Request events, several at a time (EventOutbox). */
  | { type: 'events'; events: AddressedEvent[] }
  | { type: 'reply'; id: number; value?: unknown; error?: SerializedError }
  | { type: 'disposed' };

/** EngineStatus's fields, in their order in the shared status buffer: the worker writes and the Engine reads by this one list (Engine.status() does not compile without every field). */
export const STATUS_FIELDS = ['running', 'waiting', 'kvCellsInUse', 'kvCells', 'sharedPrefixTokens', 'kvCompactions', 'schedulingSeconds', 'batchingSeconds', 'decodingSeconds', 'acceptingSeconds'] as const satisfies readonly (keyof EngineStatus)[];
