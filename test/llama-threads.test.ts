/**
 * Several threads of one process using llama.cpp: its log callback is process-wide, and entering
 * one thread's JavaScript logger from another thread aborts the process. Engines side by side
 * must come and go in any order, and this thread explains llama.cpp's errors again once it is the
 * only one using llama.cpp.
 */
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../src/engine/engine.js';
import { kv, writeGguf } from '../src/gguf/writer.js';
import { GgmlType } from '../src/gguf/types.js';
import { detachLlamaLogger } from '../src/llama/library.js';
import { llamaThreadRegistry } from '../src/llama/logger.js';
import { Model } from '../src/llama/model.js';
import { scratchDir, testbedPrompts } from './helpers/models.js';

const options = { maxTokens: 48, ignoreEos: true, speculation: 'off' as const };

test('an engine disposed while another generates: the other finishes with the tokens it gives alone', async () => {
  const first = await Engine.load({ gpu: 'cpu' });
  const second = await Engine.load({ gpu: 'cpu' });
  try {
    const alone = (await second.complete(testbedPrompts.story, options)).tokens;
    const running = second.complete(testbedPrompts.story, options);
    // Freeing the first engine's context and model logs from its thread while the second computes.
    await first.dispose();
    assert.deepEqual((await running).tokens, alone);
  } finally {
    await first.dispose();
    await second.dispose();
  }
});

async function writeAlienModel(): Promise<string> {
  const path = join(scratchDir(), 'alien.gguf');
  await writeGguf(path, {
    metadata: [['general.architecture', kv.string('nosucharch')]],
    tensors: [{ name: 'token_embd.weight', dims: [32, 4], type: GgmlType.F32, data: new Float32Array(128) }],
  });
  return path;
}

test('a failed Engine.load rejects only once its worker has counted itself out of llama.cpp and ended', async () => {
  // The CLI exits on the rejection. When it came first, the exit tore the worker down inside its
  // last llama.cpp call (unsetting the log callback) and the process died of SIGABRT. Rejecting
  // before the worker had counted itself out happened in about one load of four, so twenty loads
  // catch it.
  const users = new Int32Array(llamaThreadRegistry()); // logger.ts: cell 0 counts the threads using llama.cpp
  const model = await writeAlienModel();
  for (let load = 0; load < 20; load++) {
    await assert.rejects(Engine.load({ model, gpu: 'cpu' }), /nosucharch/);
    assert.equal(Atomics.load(users, 0), 0, `load ${load} rejected while its worker still used llama.cpp`);
  }
});

test("llama.cpp's errors explain a failed load when this thread is alone, and are dropped, not crashing, beside an engine", async () => {
  const path = await writeAlienModel();
  const loadError = () => Model.load(path, { gpu: 'cpu' }).then(
    () => assert.fail('the alien model loaded'),
    (error: Error) => error.message,
  );
  try {
    assert.match(await loadError(), /nosucharch/);
    const engine = await Engine.load({ gpu: 'cpu' });
    try {
      assert.match(await loadError(), /^cannot load model .*: llama\.cpp refused the file$/);
    } finally {
      await engine.dispose();
    }
    assert.match(await loadError(), /nosucharch/);
  } finally {
    detachLlamaLogger();
  }
});
