/** The prefill chunk's policy without a model: simulated machines whose step time follows a cost curve. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PrefillPacer } from '../src/engine/prefill-pacer.js';
import { CostCurve } from '../src/speculative/cost-model.js';

/** A curve measured on a 2-core CPU for a 0.5B model (t(1) = 25 ms; bench/probes/cost-curve.mjs --sizes …). */
const cpu = new CostCurve([1, 4, 8, 16, 32, 64, 128, 256].map((n, i) => ({ n, seconds: 0.025 * [1, 3.62, 4.19, 6.19, 10.66, 14.47, 29.99, 58.71][i] })));
/** A GPU's: 256 tokens cost hardly more than one. */
const gpu = new CostCurve([1, 64, 256].map((n, i) => ({ n, seconds: 0.01 * [1, 1.1, 1.6][i] })));

const stepMs = (curve: CostCurve, tokens: number) => 20 * curve.cost(tokens);

/** Four streams decode; then a long prompt arrives and is prefilled chunk by chunk. Returns each mixed step's chunk and time. */
function admitLongPrompt(curve: CostCurve, pacer: PrefillPacer, promptTokens = 2048): { chunk: number; ms: number }[] {
  const streams = 4;
  for (let i = 0; i < 10; i++) pacer.observe(streams, 0, stepMs(curve, streams));
  const steps: { chunk: number; ms: number }[] = [];
  for (let left = promptTokens; left > 0; ) {
    const chunk = Math.min(left, pacer.chunk(streams, { decoding: streams, prefilling: 1 }));
    const ms = stepMs(curve, streams + chunk);
    pacer.observe(streams, chunk, ms);
    steps.push({ chunk, ms });
    left -= chunk;
  }
  return steps;
}

test('with nothing decoding, a prompt goes at full chunk size', () => {
  const pacer = new PrefillPacer({ maxChunk: 256 });
  assert.equal(pacer.chunk(0, { decoding: 0, prefilling: 1 }), 256);
  admitLongPrompt(cpu, pacer);
  assert.equal(pacer.chunk(0, { decoding: 0, prefilling: 1 }), 256, 'what was learned under load does not slow an idle engine');
});

for (const stretch of [1.5, 2, 3]) {
  test(`on a CPU, chunks shrink until a step with a chunk takes at most ${stretch}× a decode-only step`, () => {
    const pacer = new PrefillPacer({ maxChunk: 256, stretch });
    const steps = admitLongPrompt(cpu, pacer);
    const decodeOnly = stepMs(cpu, 4);
    const settled = steps.slice(5, -1); // the last chunk is what is left of the prompt
    assert.ok(settled.every((s) => s.ms <= stretch * decodeOnly * 1.05), `settled steps within ${stretch}× a ${decodeOnly} ms decode step: ${settled.map((s) => s.ms.toFixed(0)).join(' ')}`);
    assert.ok(settled.every((s) => s.chunk >= 8), 'the prompt always progresses');
    // Where a prompt token costs as much in a small chunk as in a big one (at the margin), the
    // streams' share of each step is the price: the prompt gets (s − 1)/s of the machine.
    const paced = steps.reduce((sum, s) => sum + s.ms, 0);
    const alone = (2048 / 256) * stepMs(cpu, 256);
    const bound = (stretch / (stretch - 1)) * 1.15;
    assert.ok(paced < bound * alone, `prefill under load ${paced.toFixed(0)} ms vs alone ${alone.toFixed(0)} ms: within ${bound.toFixed(2)}×`);
  });
}

test('on a GPU, where big batches cost little more, chunks grow to the maximum', () => {
  const pacer = new PrefillPacer({ maxChunk: 256, stretch: 1.5 });
  const steps = admitLongPrompt(gpu, pacer);
  assert.ok(steps.at(-2)!.chunk >= 192, `chunk ${steps.at(-2)!.chunk}`);
  assert.ok(steps.length < 20, `${steps.length} steps for 2,048 tokens`);
});

test('while as many requests wait for their first token as there are streams, prompts go at full size', () => {
  const pacer = new PrefillPacer({ maxChunk: 256 });
  admitLongPrompt(cpu, pacer);
  assert.equal(pacer.chunk(1, { decoding: 1, prefilling: 7 }), 256, 'one stream does not hold back seven prompts');
  assert.equal(pacer.chunk(4, { decoding: 4, prefilling: 4 }), 256);
  assert.ok(pacer.chunk(4, { decoding: 4, prefilling: 3 }) < 64, 'the streams are the majority: paced');
});

test('a chunk starts at the minimum and grows at most twofold per step', () => {
  const pacer = new PrefillPacer({ maxChunk: 256, minChunk: 8 });
  assert.equal(pacer.chunk(4, { decoding: 4, prefilling: 1 }), 0, 'a decode-only step first: its time is the budget');
  pacer.observe(4, 0, 80);
  assert.equal(pacer.chunk(4, { decoding: 4, prefilling: 1 }), 8, 'nothing learned of prompt tokens yet: the smallest chunk');
  pacer.observe(4, 8, 81);
  assert.equal(pacer.chunk(4, { decoding: 4, prefilling: 1 }), 16);
  assert.equal(pacer.chunk(8, { decoding: 8, prefilling: 1 }), 0, 'steps decoding twice as many are timed apart');
  assert.equal(pacer.chunk(3, { decoding: 3, prefilling: 1 }), 32, '3 and 4 decoding tokens are one class (timed: a chunk, grown again)');
});

test('where even the smallest chunk breaks the budget, the smallest it is (the budget held as nearly as it can be)', () => {
  // The tiny testbed's curve: every token is dear, a step is mostly fixed overhead.
  const tiny = new CostCurve([1, 4, 8, 16, 64, 256].map((n, i) => ({ n, seconds: 0.0005 * [1, 2.9, 4.9, 9.3, 23.2, 70][i] })));
  const pacer = new PrefillPacer({ maxChunk: 256, stretch: 1.5, minChunk: 8 });
  const steps = admitLongPrompt(tiny, pacer, 1024);
  assert.ok(steps.slice(0, -1).every((s) => s.chunk === 8), steps.map((s) => s.chunk).join(' '));
});
