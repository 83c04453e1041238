/** Errors the engine loop raises that callers (the server) answer in their own terms. */

/** More requests are waiting than `EngineOptions.maxQueued` allows; retry later. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
}
