/**
 * Redis tier, shared by every Tachyon process pointed at the same server. Each entry is one
 * string value holding data and metadata together (entry.ts), written with one SET, so a reader
 * sees the whole entry or none. AUTH and TLS come through the URL (redis://user:pass@host,
 * rediss://…). Size is bounded by the server's own maxmemory policy and an optional TTL.
 *
 * Redis must never make a request fail or wait: commands time out quickly, and after a failure
 * the tier answers "unavailable" at once for a while (one warning, not one per request), then
 * tries again.
 */
import { Redis } from 'ioredis';
import { isEntryKey, TierUnavailableError, type CacheTier, type TierUsage } from './tier.js';

export interface RedisTierOptions {
  /** redis://[user:password@]host[:port][/db] or rediss:// for TLS. */
  readonly url: string;
  /** Key prefix, so several caches can share one server. */
  readonly prefix?: string;
  /** Longest wait for one command before the tier counts as down; default 500 ms. */
  readonly timeoutMs?: number;
  /** How long the tier is skipped after a failure; default 5 s. */
  readonly retryAfterMs?: number;
  /** Entries expire after this long (0: never, the server's eviction policy decides); default 0. */
  readonly ttlSeconds?: number;
  /** Receives one line when the tier goes down and one when it is back. */
  readonly onWarning?: (line: string) => void;
}

const SCAN_BATCH = 500;

export class RedisTier implements CacheTier {
  readonly name = 'redis';
  private readonly client: Redis;
  private readonly prefix: string;
  private downUntil = 0;
  private down = false;
  private lastFailure = '';
  private socketError = '';

  private constructor(private readonly options: RedisTierOptions) {
    const timeout = options.timeoutMs ?? 500;
    this.prefix = options.prefix ?? 'tachyon:kv:';
    this.client = new Redis(options.url, {
      lazyConnect: true,
      // Fail at once instead of queueing while disconnected: a slow tier must not hold requests.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: timeout,
      connectTimeout: timeout,
      retryStrategy: (attempt) => Math.min(attempt * 200, options.retryAfterMs ?? 5000),
    });
    // Errors surface through commands (which only say "Connection is closed"); the socket's own
    // error (ECONNREFUSED, auth) is kept to explain them. Without a listener ioredis would print it.
    this.client.on('error', (error: Error) => (this.socketError = error.message));
  }

  /** Connects (waiting at most the timeout); a server that is down now only means the tier starts skipped. */
  static async open(options: RedisTierOptions): Promise<RedisTier> {
    const tier = new RedisTier(options);
    await tier.client.connect().catch((error: Error) => tier.rest(error));
    return tier;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const value = await this.command(() => this.client.getBuffer(this.redisKey(key)));
    return value ?? undefined;
  }

  async put(key: string, bytes: Uint8Array): Promise<void> {
    const value = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const ttl = this.options.ttlSeconds ?? 0;
    await this.command(() => (ttl > 0 ? this.client.set(this.redisKey(key), value, 'EX', ttl) : this.client.set(this.redisKey(key), value)));
  }

  async delete(key: string): Promise<void> {
    await this.command(() => this.client.unlink(this.redisKey(key)));
  }

  async keys(): Promise<string[]> {
    return (await this.scan()).map((redisKey) => redisKey.slice(this.prefix.length)).filter(isEntryKey);
  }

  async usage(): Promise<TierUsage> {
    const keys = await this.scan();
    if (keys.length === 0) return { entries: 0, bytes: 0 };
    const pipeline = this.client.pipeline();
    for (const key of keys) pipeline.strlen(key);
    const lengths = (await this.command(() => pipeline.exec())) ?? [];
    return { entries: keys.length, bytes: lengths.reduce((sum, [, length]) => sum + Number(length ?? 0), 0) };
  }

  async clear(): Promise<void> {
    const keys = await this.scan();
    for (let i = 0; i < keys.length; i += SCAN_BATCH) await this.command(() => this.client.unlink(...keys.slice(i, i + SCAN_BATCH)));
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }

  private redisKey(key: string): string {
    if (!isEntryKey(key)) throw new RangeError(`not a cache key: ${key}`);
    return `${this.prefix}${key}`;
  }

  private async scan(): Promise<string[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.command(() => this.client.scan(cursor, 'MATCH', `${this.prefix}*`, 'COUNT', SCAN_BATCH));
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
    return keys;
  }

  /** Runs one command unless the tier is resting after a failure; a failure starts a rest. */
  private async command<T>(run: () => Promise<T>): Promise<T> {
    if (Date.now() < this.downUntil) throw new TierUnavailableError(`redis at ${this.safeUrl()} is unavailable (${this.lastFailure})`);
    if (this.client.status === 'end') this.client.connect().catch(() => undefined);
    try {
      const result = await run();
      if (this.down) this.options.onWarning?.(`redis cache tier at ${this.safeUrl()} is back`);
      this.down = false;
      return result;
    } catch (error) {
      this.rest(error as Error);
      throw new TierUnavailableError(`redis at ${this.safeUrl()} is unavailable (${this.lastFailure})`);
    }
  }

  /** Skips the tier for a while; warns once per outage. */
  private rest(error: Error): void {
    const retryAfterMs = this.options.retryAfterMs ?? 5000;
    this.downUntil = Date.now() + retryAfterMs;
    this.lastFailure = this.socketError && this.socketError !== error.message ? `${error.message} ${this.socketError}` : error.message;
    if (!this.down) {
      this.options.onWarning?.(`redis cache tier at ${this.safeUrl()} unavailable (${error.message}); skipping it, retrying every ${retryAfterMs / 1000} s`);
    }
    this.down = true;
  }

  /** The URL without its password, for messages. */
  private safeUrl(): string {
    try {
      const url = new URL(this.options.url);
      if (url.password) url.password = '***';
      return url.toString();
    } catch {
      return 'the configured URL';
    }
  }
}
