/**
 * A model's content fingerprint: SHA-256 of the whole GGUF file, so two files with the same shapes
 * but different weights (or different metadata such as the RoPE base, which changes the KV too)
 * never share cache entries. Hashing a large model takes seconds, so the result is remembered
 * under .cache/fingerprints/, keyed by the file's absolute path, size and modification time.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { cacheDir } from '../paths.js';
import { writeFileAtomic } from '../atomic-file.js';
import { onceByKey } from '../memo.js';

interface RememberedFingerprint {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly sha256: string;
}

const memo = new Map<string, Promise<string>>();

/** Hex SHA-256 of the model file; computed once per (path, size, mtime). */
export function modelFingerprint(path: string, rememberIn = join(cacheDir, 'fingerprints')): Promise<string> {
  const absolute = resolve(path);
  return onceByKey(memo, absolute, () => fingerprintOf(absolute, rememberIn));
}

async function fingerprintOf(path: string, rememberIn: string): Promise<string> {
  const { size, mtimeMs } = await stat(path);
  const record = join(rememberIn, `${createHash('sha256').update(path).digest('hex')}.json`);
  const remembered = await readRemembered(record);
  if (remembered && remembered.path === path && remembered.size === size && remembered.mtimeMs === mtimeMs) return remembered.sha256;
  const sha256 = await hashFile(path);
  const entry: RememberedFingerprint = { path, size, mtimeMs, sha256 };
  await writeFileAtomic(record, JSON.stringify(entry));
  return sha256;
}

async function readRemembered(record: string): Promise<RememberedFingerprint | undefined> {
  try {
    return JSON.parse(await readFile(record, 'utf8')) as RememberedFingerprint;
  } catch {
    return undefined;
  }
}

function hashFile(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash('sha256');
    createReadStream(path, { highWaterMark: 1 << 22 })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolvePromise(hash.digest('hex')));
  });
}
