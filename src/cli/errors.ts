/** Turns any failure into one clear line on stderr and a non-zero exit code: no stack traces. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function reportFatal(error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`tachyon: ${message.split('\n')[0]}\n`);
  if (process.env.TACHYON_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
}
