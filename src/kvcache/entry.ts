/**
 * The bytes of one cache entry: a block's KV state plus everything needed to prove, before the
 * state reaches llama.cpp, that it is the block asked for. Every tier stores these bytes as they
 * are, so data and metadata always travel together.
 *
 *   "TKVC"  u32 format version
 *   root key (32)  parent key (32)  block key (32)     root = the namespace the entry was made in
 *   u32 first position  u32 token count  i32 × tokens
 *   u32 state length  state bytes (llama_state_seq_get_data of the block alone)
 *   SHA-256 (32) of everything above
 *
 * The block key must equal SHA-256(parent key, tokens): an entry proves its own key, so a file
 * renamed to another key, or tokens swapped behind a forged key, are rejected without a model.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { chainKey, CACHE_FORMAT_VERSION, KEY_BYTES } from './keys.js';
import { describeSequenceState, holdsExactly, StateFormatError, type SequenceStateLayout } from './state-format.js';

const MAGIC = 0x4356_4b54; // "TKVC" read as a little-endian u32
const FIXED_HEADER_BYTES = 4 + 4 + 3 * KEY_BYTES + 4 + 4;
const CHECKSUM_BYTES = 32;

/** Why an entry was not used; each is counted as a miss. */
export type RejectReason =
  | 'empty'
  | 'truncated'
  | 'magic'
  | 'format'
  | 'checksum'
  | 'key'
  | 'namespace'
  | 'tokens'
  | 'layout'
  | 'restore';

export class EntryRejected extends Error {
  override name = 'EntryRejected';
  constructor(
    readonly reason: RejectReason,
    detail: string,
  ) {
    super(`cache entry rejected (${reason}): ${detail}`);
  }
}

export interface CacheEntry {
  readonly root: Uint8Array;
  readonly parent: Uint8Array;
  readonly key: Uint8Array;
  readonly firstPosition: number;
  readonly tokens: Int32Array;
  /** llama.cpp sequence state holding exactly this block's cells. */
  readonly state: Uint8Array;
}

export function encodeEntry(entry: CacheEntry): Uint8Array {
  const size = FIXED_HEADER_BYTES + entry.tokens.length * 4 + 4 + entry.state.length + CHECKSUM_BYTES;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, CACHE_FORMAT_VERSION, true);
  bytes.set(entry.root, 8);
  bytes.set(entry.parent, 8 + KEY_BYTES);
  bytes.set(entry.key, 8 + 2 * KEY_BYTES);
  let offset = 8 + 3 * KEY_BYTES;
  view.setUint32(offset, entry.firstPosition, true);
  view.setUint32(offset + 4, entry.tokens.length, true);
  offset += 8;
  for (const token of entry.tokens) {
    view.setInt32(offset, token, true);
    offset += 4;
  }
  view.setUint32(offset, entry.state.length, true);
  bytes.set(entry.state, offset + 4);
  offset += 4 + entry.state.length;
  bytes.set(sha256(bytes.subarray(0, offset)), offset);
  checksummed.add(bytes);
  return bytes;
}

/**
 * Entries whose checksum this process computed or verified: the RAM tier hands back the very
 * arrays it was given, and hashing a 2,048-token prefix's 24 MB again on every hit cost 15 ms of
 * a 290 ms time to first token. Bytes from disk or Redis arrive as new arrays and are verified.
 */
const checksummed = new WeakSet<Uint8Array>();

/** Parses and checks an entry's structure and checksum; throws EntryRejected. */
export function decodeEntry(bytes: Uint8Array): CacheEntry {
  if (bytes.length === 0) throw new EntryRejected('empty', 'no bytes');
  if (bytes.length < FIXED_HEADER_BYTES + 4 + CHECKSUM_BYTES) throw new EntryRejected('truncated', `${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new EntryRejected('magic', 'not a Tachyon KV entry');
  const version = view.getUint32(4, true);
  if (version !== CACHE_FORMAT_VERSION) throw new EntryRejected('format', `format ${version}, expected ${CACHE_FORMAT_VERSION}`);
  const body = bytes.subarray(0, bytes.length - CHECKSUM_BYTES);
  if (!checksummed.has(bytes)) {
    if (!timingSafeEqual(sha256(body), bytes.subarray(body.length))) throw new EntryRejected('checksum', 'checksum mismatch');
    checksummed.add(bytes);
  }
  const tokenCount = view.getUint32(8 + 3 * KEY_BYTES + 4, true);
  const tokensAt = FIXED_HEADER_BYTES;
  const stateLengthAt = tokensAt + tokenCount * 4;
  if (stateLengthAt + 4 > body.length) throw new EntryRejected('truncated', 'token list runs past the end');
  const stateLength = view.getUint32(stateLengthAt, true);
  if (stateLengthAt + 4 + stateLength !== body.length) throw new EntryRejected('truncated', 'state length does not match the entry');
  const tokens = new Int32Array(tokenCount);
  for (let i = 0; i < tokenCount; i++) tokens[i] = view.getInt32(tokensAt + 4 * i, true);
  const entry: CacheEntry = {
    root: bytes.subarray(8, 8 + KEY_BYTES),
    parent: bytes.subarray(8 + KEY_BYTES, 8 + 2 * KEY_BYTES),
    key: bytes.subarray(8 + 2 * KEY_BYTES, 8 + 3 * KEY_BYTES),
    firstPosition: view.getUint32(8 + 3 * KEY_BYTES, true),
    tokens,
    state: bytes.subarray(stateLengthAt + 4, body.length),
  };
  if (!equalBytes(chainKey(entry.parent, tokens), entry.key)) throw new EntryRejected('key', 'key is not the hash of its parent and tokens');
  return entry;
}

export interface ExpectedBlock {
  readonly root: Uint8Array;
  readonly key: Uint8Array;
  readonly firstPosition: number;
  readonly tokens: readonly number[];
  readonly layout: SequenceStateLayout;
}

/** Checks a decoded entry is exactly the block expected, down to its state's cells; throws EntryRejected. */
export function checkEntry(entry: CacheEntry, expected: ExpectedBlock): void {
  checkNamespace(entry, expected.root);
  if (!equalBytes(entry.key, expected.key)) throw new EntryRejected('key', 'stored under another key');
  const sameTokens = entry.tokens.length === expected.tokens.length && expected.tokens.every((token, i) => entry.tokens[i] === token);
  if (!sameTokens || entry.firstPosition !== expected.firstPosition) throw new EntryRejected('tokens', 'holds other tokens');
  checkState(entry.state, expected.layout, expected.firstPosition, expected.tokens.length);
}

export interface ExpectedContinuation {
  readonly root: Uint8Array;
  readonly parent: Uint8Array;
  readonly firstPosition: number;
  readonly layout: SequenceStateLayout;
}

/**
 * Checks a decoded entry is a partial block that follows `parent` at `firstPosition`, down to its
 * state's cells; which of its tokens are wanted is the caller's to compare. Throws EntryRejected.
 */
export function checkContinuation(entry: CacheEntry, expected: ExpectedContinuation): void {
  checkNamespace(entry, expected.root);
  if (!equalBytes(entry.parent, expected.parent)) throw new EntryRejected('key', 'follows another prefix');
  if (entry.firstPosition !== expected.firstPosition || entry.tokens.length === 0) throw new EntryRejected('tokens', 'holds other positions');
  checkState(entry.state, expected.layout, expected.firstPosition, entry.tokens.length);
}

function checkNamespace(entry: CacheEntry, root: Uint8Array): void {
  if (!equalBytes(entry.root, root)) throw new EntryRejected('namespace', 'made for another model, KV layout or salt');
}

function checkState(state: Uint8Array, layout: SequenceStateLayout, firstPosition: number, count: number): void {
  let info;
  try {
    info = describeSequenceState(state);
  } catch (error) {
    if (error instanceof StateFormatError) throw new EntryRejected('layout', error.message);
    throw error;
  }
  if (info.layers !== layout.layers || info.kType !== layout.kType || info.vType !== layout.vType || info.vTransposed !== layout.vTransposed) {
    throw new EntryRejected('layout', 'KV types or V layout differ from this context');
  }
  if (!holdsExactly(info.positions, firstPosition, count)) {
    throw new EntryRejected('layout', 'state cells are not exactly the block positions');
  }
}

function sha256(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
