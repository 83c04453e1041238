/**
 * The oracle bound of bench spec: the schedule is the fastest way along the trajectory given
 * what was drafted, and on the testbed pair the drafters' accepted paths really follow plain
 * decoding's output.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { OracleDrafting, oracleSchedule, type OracleStep } from '../src/bench/oracle.js';
import { Context } from '../src/llama/context.js';
import { PlainDecoder } from '../src/generate/decoder.js';
import { CostCurve } from '../src/speculative/cost-model.js';
import { createDraftContext } from '../src/speculative/draft-model.js';
import { runSolo } from './helpers/loop.js';
import { loadModel, testbedDraft, testbedPrompts, testbedTarget } from './helpers/models.js';

const step = (acceptedDepth: number, extra: Partial<OracleStep> = {}): OracleStep => ({
  acceptedDepth, cheapMs: 0, costlyMsPerNode: 0, firstCostlyDepth: Infinity, ...extra,
});

describe('oracle schedule', () => {
  test('nothing drafted: exactly plain decoding', () => {
    const schedule = oracleSchedule([step(0), step(0), step(0)], CostCurve.flat(), 10);
    assert.deepEqual(schedule, { ms: 30, steps: 3, speculative: [] });
  });

  test('free verification takes the whole accepted path, up to the end of the trajectory', () => {
    // 9 tokens after the first: a 5-token path at 0 covers tokens 1-6, then 2 plain steps reach 8.
    const steps = [step(5), ...Array.from({ length: 7 }, () => step(0))];
    assert.deepEqual(oracleSchedule(steps, CostCurve.flat(), 10), { ms: 30, steps: 3, speculative: [{ at: 0, tokens: 6 }] });
    // A path longer than what remains is cut to it.
    assert.deepEqual(oracleSchedule([step(20), step(0), step(0)], CostCurve.flat(), 10), { ms: 10, steps: 1, speculative: [{ at: 0, tokens: 3 }] });
  });

  test('drafting that costs more than it saves is not used; a cheaper prefix beats the full path', () => {
    const curve = new CostCurve([{ n: 1, seconds: 1 }, { n: 2, seconds: 1.1 }, { n: 3, seconds: 5 }]);
    // Verifying 1 node (c(2) = 1.1) saves a decode; 2 nodes (c(3) = 5) cost more than 3 plain steps.
    const oneAhead = oracleSchedule([step(2), step(0), step(0)], curve, 10);
    assert.deepEqual(oneAhead, { ms: 11 + 10, steps: 2, speculative: [{ at: 0, tokens: 2 }] });
    // The draft model's node at depth 1 costs a draft decode: 15 ms, more than the decode it saves.
    const costly = oracleSchedule([step(1, { costlyMsPerNode: 15, firstCostlyDepth: 1 }), step(0)], curve, 10);
    assert.deepEqual(costly, { ms: 20, steps: 2, speculative: [] });
    // Each node it takes costs one: at 0.5 ms both pay (c(3) = 1.2 + 1 ms of drafting for 3 tokens).
    const cheaper = new CostCurve([{ n: 1, seconds: 1 }, { n: 2, seconds: 1.1 }, { n: 3, seconds: 1.2 }]);
    const twoNodes = oracleSchedule([step(2, { costlyMsPerNode: 0.5, firstCostlyDepth: 1 }), step(0), step(0)], cheaper, 10);
    assert.deepEqual(twoNodes, { ms: 12 + 2 * 0.5, steps: 1, speculative: [{ at: 0, tokens: 3 }] });
  });
});

describe('oracle drafting on the testbed pair', () => {
  let target: Context;
  let draft: Context;
  before(async () => {
    target = Context.create(await loadModel(testbedTarget), { contextSize: 1024, sequences: 8 });
    draft = createDraftContext(await loadModel(testbedDraft), target);
  });
  after(() => {
    draft.dispose();
    target.dispose();
  });

  test('accepted paths follow the plain output, and the draft model reaches deep on reasoning', async () => {
    const model = target.model;
    const prompt = model.tokenizer.tokenize(testbedPrompts.reasoning);
    const output = (await runSolo(target, (sampler) => new PlainDecoder(sampler), prompt, { temperature: 0, maxTokens: 64 })).tokens;
    const steps = await new OracleDrafting(draft).steps(prompt, output);
    assert.equal(steps.length, output.length - 1);
    for (const [i, { acceptedDepth }] of steps.entries()) assert.ok(acceptedDepth <= output.length - 1 - i);
    // The testbed draft agrees with the target on 94% of reasoning tokens: most positions accept
    // several drafted tokens, which only a chain asked for its full depth can show.
    const mean = steps.reduce((sum, s) => sum + s.acceptedDepth, 0) / steps.length;
    assert.ok(mean > 3, `mean accepted depth ${mean}`);
    assert.ok(steps.some((s) => s.firstCostlyDepth < Infinity && s.costlyMsPerNode > 0), 'some accepted node came from the draft model alone');
    // Free verification and free drafting: how few target calls the accepted paths alone allow (the
    // measured drafting times are this machine's, and would make the count depend on its load).
    const schedule = oracleSchedule(steps.map((s) => ({ ...s, cheapMs: 0, costlyMsPerNode: 0 })), CostCurve.flat(), 1);
    assert.ok(schedule.steps < steps.length / 2, `oracle target calls ${schedule.steps} for ${output.length} tokens`);
    // Its speculative steps are ones the drafts allowed, in order, and with its plain steps they cover the trajectory.
    let covered = 0;
    for (const [i, { at, tokens }] of schedule.speculative.entries()) {
      assert.ok(tokens >= 2 && tokens - 1 <= steps[at].acceptedDepth);
      if (i > 0) assert.ok(at >= schedule.speculative[i - 1].at + schedule.speculative[i - 1].tokens);
      covered += tokens;
    }
    assert.equal(covered + (schedule.steps - schedule.speculative.length), steps.length);
  });
});
