/** Work done once per key and shared by concurrent callers; a failure is forgotten, so the next call tries again. */
export function onceByKey<T>(pending: Map<string, Promise<T>>, key: string, work: () => Promise<T>): Promise<T> {
  let promise = pending.get(key);
  if (!promise) {
    promise = work();
    pending.set(key, promise);
    promise.catch(() => pending.delete(key));
  }
  return promise;
}
