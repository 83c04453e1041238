// A forward-only, buffered cursor over a file handle. Every read is bounded by the real file
// size first, so a corrupt length field becomes a clear error instead of a huge allocation.

import type { FileHandle } from 'node:fs/promises';

import { GgufError } from './types.js';

const CHUNK_BYTES = 1 << 20;
const utf8 = new TextDecoder('utf-8');

export class FileCursor {
  private buffer = Buffer.alloc(0);
  /** File position of buffer[0]. */
  private bufferStart = 0;
  private position = 0;

  constructor(
    private readonly handle: FileHandle,
    readonly fileSize: number,
  ) {}

  get offset(): number {
    return this.position;
  }

  get remaining(): number {
    return this.fileSize - this.position;
  }

  /** Make `byteCount` bytes at the cursor available, or fail with a "truncated" error. */
  async ensure(byteCount: number, what: string): Promise<void> {
    if (byteCount > this.remaining) {
      throw new GgufError(
        'TRUNCATED',
        `truncated GGUF: ${what} at offset ${this.position} needs ${byteCount} bytes but only ${this.remaining} remain`,
      );
    }
    const bufferEnd = this.bufferStart + this.buffer.length;
    if (this.position + byteCount <= bufferEnd) return;
    await this.refill(Math.max(byteCount, Math.min(CHUNK_BYTES, this.remaining)));
  }

  private async refill(byteCount: number): Promise<void> {
    const next = Buffer.allocUnsafe(byteCount);
    let filled = 0;
    while (filled < byteCount) {
      const { bytesRead } = await this.handle.read(next, filled, byteCount - filled, this.position + filled);
      if (bytesRead === 0) {
        throw new GgufError('TRUNCATED', `truncated GGUF: file ended at offset ${this.position + filled} while reading`);
      }
      filled += bytesRead;
    }
    this.buffer = next;
    this.bufferStart = this.position;
  }

  /** Take `byteCount` already-ensured bytes as a view (valid until the next ensure). */
  take(byteCount: number): Buffer {
    const start = this.position - this.bufferStart;
    this.position += byteCount;
    return this.buffer.subarray(start, start + byteCount);
  }

  async bytes(byteCount: number, what: string): Promise<Buffer> {
    await this.ensure(byteCount, what);
    return this.take(byteCount);
  }

  async u8(what: string): Promise<number> {
    return (await this.bytes(1, what)).readUInt8(0);
  }

  async u32(what: string): Promise<number> {
    return (await this.bytes(4, what)).readUInt32LE(0);
  }

  async u64(what: string): Promise<bigint> {
    return (await this.bytes(8, what)).readBigUInt64LE(0);
  }

  /** A u64 that is used as a size/count: must fit a JS number and `limit`. */
  async boundedU64(what: string, limit: number, unitBytes = 1): Promise<number> {
    const at = this.position;
    const value = await this.u64(what);
    if (value * BigInt(unitBytes) > BigInt(limit)) {
      throw new GgufError(
        'CORRUPT',
        `corrupt or truncated GGUF: ${what} ${value} at offset ${at} runs past the end of the file (${this.fileSize} bytes)`,
      );
    }
    return Number(value);
  }

  /** GGUF string: u64 byte length then UTF-8 bytes (no terminator). */
  async string(what: string): Promise<string> {
    const length = await this.boundedU64(`${what} length`, this.remaining - 8);
    await this.ensure(length, what);
    return utf8.decode(this.take(length));
  }

  skipTo(position: number): void {
    this.position = position;
  }
}
