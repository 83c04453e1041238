/**
 * llama.cpp's log callback is one per process, but a koffi callback may only be entered from the
 * thread that registered it: a llama.cpp call on another JavaScript thread that logs into it
 * enters V8 without its lock and aborts the process (two engines in one process, one freeing its
 * context while the other's logger is installed). So the threads that load llama.cpp count
 * themselves in shared memory, handed to every engine worker, and a thread's JavaScript logger is
 * installed only while it is the one thread using llama.cpp; otherwise a native function that
 * ignores its arguments stands in, and llama.cpp's lines are dropped (errors are then explained
 * without them).
 */
import koffi from 'koffi';
import { LogCallback, type LlamaApi, type Pointer } from './ffi.js';

const GGML_LOG_LEVEL_ERROR = 4;
const GGML_LOG_LEVEL_CONT = 5;
/** Error lines kept for the next takeErrors(). */
const KEPT_ERRORS = 50;

const USERS = 0;
const LOCK = 1;
let registry: Int32Array | undefined;

function sharedRegistry(): Int32Array {
  registry ??= new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
  return registry;
}

/** The memory in which this process's threads count themselves: hand it to a worker that may load llama.cpp. */
export function llamaThreadRegistry(): SharedArrayBuffer {
  return sharedRegistry().buffer as SharedArrayBuffer;
}

/** Joins the count of the thread that started this one; call before this thread loads llama.cpp. */
export function adoptLlamaThreadRegistry(buffer: SharedArrayBuffer): void {
  if (registry && registry.buffer !== buffer) throw new Error('this thread already counts itself in another registry');
  registry = new Int32Array(buffer);
}

/** Runs `fn` holding the registry's lock, so that counting and installing a logger are one step. */
function locked<T>(fn: (cells: Int32Array) => T): T {
  const cells = sharedRegistry();
  while (Atomics.compareExchange(cells, LOCK, 0, 1) !== 0) Atomics.wait(cells, LOCK, 1);
  try {
    return fn(cells);
  } finally {
    Atomics.store(cells, LOCK, 0);
    Atomics.notify(cells, LOCK, 1);
  }
}

export class LlamaLogger {
  private readonly errors: string[] = [];
  private lastLevel = 0;
  private readonly callback: ReturnType<typeof koffi.register>;
  private attached = false;

  /**
   * `silent` is a native function that ignores its arguments (C callers clean up their own
   * arguments on every platform llama.cpp ships for, so a function of none may stand for a callback).
   */
  constructor(
    private readonly api: LlamaApi,
    private readonly silent: Pointer,
    verbose: boolean,
  ) {
    this.callback = koffi.register((level: number, text: string) => {
      const effective = level === GGML_LOG_LEVEL_CONT ? this.lastLevel : level;
      this.lastLevel = effective;
      if (effective >= GGML_LOG_LEVEL_ERROR) this.errors.push(text.trim());
      if (this.errors.length > KEPT_ERRORS) this.errors.shift();
      if (verbose) process.stderr.write(text);
    }, koffi.pointer(LogCallback));
  }

  /** Counts this thread in; call before its first llama.cpp call. */
  attach(): void {
    locked((cells) => {
      const users = Atomics.add(cells, USERS, 1) + 1;
      this.attached = true;
      this.install(users === 1 ? this.callback : this.silent);
    });
  }

  /** Takes the log back when the threads that arrived since have left; call before a call whose errors matter. */
  claimIfAlone(): void {
    locked((cells) => {
      if (this.attached && Atomics.load(cells, USERS) === 1) this.install(this.callback);
    });
  }

  /** Counts this thread out and releases its callback; after this, llama.cpp must not be called from it. */
  detach(): void {
    if (!this.attached) return;
    locked((cells) => {
      Atomics.sub(cells, USERS, 1);
      this.attached = false;
      this.install(this.silent);
    });
    koffi.unregister(this.callback);
  }

  /** Error lines logged since the last call. */
  takeErrors(): string[] {
    return this.errors.splice(0, this.errors.length).filter((line) => line.length > 0);
  }

  private install(callback: Pointer): void {
    this.api.logSet(callback, null);
    this.api.llamaLogSet(callback, null);
  }
}
