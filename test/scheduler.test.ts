/** The scheduler's policy without a model (as vLLM tests its scheduler on CPU): admission, preemption, prefill budget. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, type SchedulerLimits } from '../src/engine/scheduler.js';
import { SequenceIdPool } from '../src/engine/sequence-ids.js';
import { Request } from '../src/engine/request.js';
import { QueueFullError } from '../src/engine/errors.js';
import type { GenerationOutput } from '../src/generate/generate.js';

const limits: SchedulerLimits = { maxSequences: 2, maxQueued: 3, kvCells: 100 };

function request(id: number, promptLength: number): Request {
  return new Request(id, Array.from({ length: promptLength }, (_, i) => i), {}, {} as GenerationOutput, () => {});
}

test('admission is first come, first served, within running slots and KV room', () => {
  const scheduler = new Scheduler(limits, new SequenceIdPool(8));
  const [a, b, c] = [request(1, 10), request(2, 10), request(3, 10)];
  for (const r of [a, b, c]) scheduler.enqueue(r);
  assert.deepEqual(scheduler.admit(), [a, b], 'two slots');
  assert.deepEqual([a.seq, b.seq], [0, 1], 'each holds a sequence id');
  assert.equal(c.state, 'waiting');
  scheduler.remove(a);
  assert.deepEqual(scheduler.admit(), [c]);

  const tight = new Scheduler({ ...limits, kvCells: 30 }, new SequenceIdPool(8));
  const [big, small] = [request(4, 25), request(5, 2)];
  tight.enqueue(request(6, 10));
  tight.enqueue(big);
  tight.enqueue(small);
  assert.equal(tight.admit().length, 1, 'the 25-token prompt does not fit beside the first, and nothing overtakes it');
  assert.equal(small.state, 'waiting');
});

test('a prompt that begins with 64+ tokens another request is still prefilling waits for them (then shares them); shorter common beginnings do not wait', () => {
  const scheduler = new Scheduler({ ...limits, maxSequences: 4, kvCells: 1000 }, new SequenceIdPool(8));
  const [first, same, short] = [request(1, 200), request(2, 150), request(3, 40)];
  for (const r of [first, same]) scheduler.enqueue(r);
  assert.deepEqual(scheduler.admit(), [first], 'the second waits: its first 149 tokens are the first prompt\'s, not evaluated yet');
  first.cached = 100;
  assert.deepEqual(scheduler.admit(), [], 'still ahead of what the first has evaluated');
  first.cached = 200;
  assert.deepEqual(scheduler.admit(), [same], 'there: admitted, it shares them');
  const other = new Scheduler({ ...limits, maxSequences: 4, kvCells: 1000 }, new SequenceIdPool(8));
  other.enqueue(request(4, 200));
  other.enqueue(short);
  assert.equal(other.admit().length, 2, 'a 39-token common beginning is not worth a wait');
});

test("a decoding request's generated tokens hold KV room: no admission into cells it fills", () => {
  const scheduler = new Scheduler({ ...limits, kvCells: 100 }, new SequenceIdPool(8));
  const long = request(1, 10);
  scheduler.enqueue(long);
  scheduler.admit();
  long.state = 'decoding';
  long.cached = 80; // 10 prompt tokens and 70 generated
  scheduler.enqueue(request(2, 30));
  assert.deepEqual(scheduler.admit(), [], '80 cells held + 1 for its next token + 31 would pass 100 (counting 10 − 80 of "prefill left" admitted it, and it was preempted again at once, for good)');
  long.cached = 60;
  assert.equal(scheduler.admit().length, 1);
});

test('a queue beyond the free running slots plus maxQueued is refused', () => {
  const scheduler = new Scheduler(limits, new SequenceIdPool(8));
  for (let i = 0; i < 5; i++) scheduler.enqueue(request(i, 4));
  assert.throws(() => scheduler.enqueue(request(9, 4)), QueueFullError);
  assert.equal(scheduler.admit().length, 2);
  assert.throws(() => scheduler.enqueue(request(10, 4)), QueueFullError, 'two running, three waiting: no slot and no queue place is free');
  scheduler.remove(scheduler.running[0]);
  scheduler.enqueue(request(11, 4));
});

test('when KV room runs out the newest running request is preempted back to the front of the queue, keeping its id', () => {
  const scheduler = new Scheduler({ ...limits, kvCells: 40 }, new SequenceIdPool(8));
  const [old, young, queued] = [request(1, 10), request(2, 10), request(3, 5)];
  for (const r of [old, young, queued]) scheduler.enqueue(r);
  scheduler.admit();
  for (const r of [old, young]) {
    r.state = 'decoding';
    r.cached = 19;
  }
  // 38 cells held + one pending token each = 40: fits. One more cell each does not.
  assert.deepEqual(scheduler.preempt(), []);
  old.cached = 20;
  assert.deepEqual(scheduler.preempt(), [young]);
  assert.equal(young.state, 'waiting');
  assert.equal(young.seq, 1, 'the preempted request keeps its sequence id');
  assert.deepEqual(scheduler.waiting, [young, queued], 'it is next in line');
});

test("prefill chunks share the step's budget first come, first served", () => {
  const scheduler = new Scheduler({ ...limits, maxSequences: 3 }, new SequenceIdPool(8));
  const [a, b] = [request(1, 20), request(2, 20)];
  scheduler.enqueue(a);
  scheduler.enqueue(b);
  scheduler.admit();
  assert.deepEqual(scheduler.prefillChunks(16).map((c) => [c.request.id, c.count]), [[1, 16]], 'the oldest prompt first, within the budget');
  a.cached = 16;
  assert.deepEqual(scheduler.prefillChunks(16).map((c) => [c.request.id, c.count]), [[1, 4], [2, 12]]);
  assert.deepEqual(scheduler.prefillChunks(3).map((c) => [c.request.id, c.count]), [[1, 3]], 'within what the batch has left');
});

test('sequence ids: borrowed for a step, all or nothing, returned', () => {
  const ids = new SequenceIdPool(4);
  assert.equal(ids.acquire(), 0);
  assert.deepEqual(ids.borrow(2), [1, 2]);
  assert.equal(ids.borrow(2), undefined);
  ids.release(1);
  ids.release(2);
  assert.equal(ids.available, 3);
  assert.throws(() => ids.release(2), /not in use/);
});
