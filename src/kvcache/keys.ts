/**
 * Cache keys. A block's key is a SHA-256 chain over (parent key, the block's tokens), so it names
 * the whole prefix up to the block's end, and the chain starts at a root that binds everything
 * that changes the KV bytes: the model's content, the backend, the K/V types and the V layout
 * actually in use, llama.cpp's state format, this cache's entry format, the block size, and an
 * optional per-request salt (tenants with different salts never share entries, so the speed of a
 * hit cannot reveal another tenant's prompt).
 */
import { createHash } from 'node:crypto';
import type { Backend } from '../llama/library.js';
import { LLAMA_STATE_FORMAT, type SequenceStateLayout } from './state-format.js';

/** Version of our entry encoding (entry.ts); bump when the bytes change. */
export const CACHE_FORMAT_VERSION = 1;

export const KEY_BYTES = 32;

export interface CacheNamespace {
  /** Hex SHA-256 of the model file. */
  readonly modelFingerprint: string;
  readonly backend: Backend;
  /** Read from a real sequence state of the context (see probeStateLayout). */
  readonly layout: SequenceStateLayout;
  readonly blockSize: number;
}

/** Root of the key chain for a namespace and an optional salt. */
export function rootKey(namespace: CacheNamespace, salt = ''): Buffer {
  const { modelFingerprint, backend, layout, blockSize } = namespace;
  const fields = {
    format: CACHE_FORMAT_VERSION,
    llamaState: LLAMA_STATE_FORMAT,
    model: modelFingerprint,
    backend,
    layers: layout.layers,
    kType: layout.kType,
    vType: layout.vType,
    vTransposed: layout.vTransposed,
    blockSize,
  };
  const hash = createHash('sha256').update(JSON.stringify(fields));
  // Length-prefixed so no salt can be confused with a different field layout.
  if (salt) hash.update(`salt:${Buffer.byteLength(salt)}:${salt}`);
  return hash.digest();
}

/** The key of the block of `tokens` that follows the prefix named by `parent`. */
export function chainKey(parent: Uint8Array, tokens: readonly number[] | Int32Array): Buffer {
  const ids = Int32Array.from(tokens);
  return createHash('sha256').update(parent).update(new Uint8Array(ids.buffer)).digest();
}

/**
 * The name the partial block after `parent` is stored under: looked up knowing only the prefix
 * (its tokens are what the lookup wants to learn), so a sequence's last, incomplete block can be
 * reused token by token, as llama-server reuses a slot. The entry itself still proves its own
 * key from its parent and tokens. Domain-separated from chainKey, which starts with the parent.
 */
export function continuationName(parent: Uint8Array): Buffer {
  return createHash('sha256').update('tachyon-continuation\0').update(parent).digest();
}

/** Keys of every complete block of `tokens`, in order. */
export function blockKeys(root: Uint8Array, tokens: readonly number[], blockSize: number): Buffer[] {
  const keys: Buffer[] = [];
  let parent: Uint8Array = root;
  for (let start = 0; start + blockSize <= tokens.length; start += blockSize) {
    parent = chainKey(parent, tokens.slice(start, start + blockSize));
    keys.push(parent as Buffer);
  }
  return keys;
}
