/**
 * The context's sequence ids: one budget for every request (an id for its lifetime), every tree
 * branch (ids borrowed for one step) and every scratch use. No other code picks ids.
 */
export class SequenceIdPool {
  /** Free ids, lowest last (so they are handed out lowest first). */
  private readonly free: number[];

  constructor(readonly size: number) {
    this.free = Array.from({ length: size }, (_, i) => size - 1 - i);
  }

  get available(): number {
    return this.free.length;
  }

  get inUse(): number {
    return this.size - this.free.length;
  }

  /** An id, or undefined when none is free. */
  acquire(): number | undefined {
    return this.free.pop();
  }

  /** `count` ids for one step (all or nothing). */
  borrow(count: number): number[] | undefined {
    if (count > this.free.length) return undefined;
    return this.free.splice(this.free.length - count, count).reverse();
  }

  release(id: number): void {
    if (!(id >= 0 && id < this.size) || this.free.includes(id)) throw new RangeError(`sequence id ${id} is not in use`);
    this.free.push(id);
    // Keep lowest-first order: ids are few, and a stable order keeps KV layouts reproducible.
    this.free.sort((a, b) => b - a);
  }
}
