/** The value kept under `key`, made by `create` the first time it is asked for. */
export function getOrCreate<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create();
    map.set(key, value);
  }
  return value;
}

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
