/**
 * The structs we pass by value must match the pinned llama.cpp headers byte for byte. This compiles
 * a tiny C program against the vendored headers and compares every field offset with koffi's layout.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import koffi from 'koffi';
import { Batch, ContextParams, ModelParams, ThreadpoolParams } from '../src/llama/ffi.js';
import { projectRoot } from './helpers/models.js';

const structs = [
  { c: 'struct llama_model_params', type: ModelParams },
  { c: 'struct llama_context_params', type: ContextParams },
  { c: 'struct llama_batch', type: Batch },
  { c: 'struct ggml_threadpool_params', type: ThreadpoolParams },
];

function fieldsOf(type: koffi.IKoffiCType): string[] {
  const info = koffi.introspect(type) as { members: Record<string, unknown> };
  return Object.keys(info.members);
}

function compileLayoutProbe(): Record<string, number> {
  const dir = mkdtempSync(join(tmpdir(), 'tachyon-abi-'));
  const lines = structs.flatMap(({ c, type }) => [
    `printf("%s sizeof %zu\\n", "${c}", sizeof(${c}));`,
    ...fieldsOf(type).map((field) => `printf("%s %s %zu\\n", "${c}", "${field}", offsetof(${c}, ${field}));`),
  ]);
  const source = `#include <stdio.h>\n#include <stddef.h>\n#include "llama.h"\nint main(void) {\n${lines.join('\n')}\nreturn 0;\n}\n`;
  writeFileSync(join(dir, 'probe.c'), source);
  execFileSync('cc', ['-I', join(projectRoot, 'vendor/llama.cpp/include'), '-o', join(dir, 'probe'), join(dir, 'probe.c')]);
  const layout: Record<string, number> = {};
  for (const line of execFileSync(join(dir, 'probe'), { encoding: 'utf8' }).trim().split('\n')) {
    const cut = line.lastIndexOf(' ');
    layout[line.slice(0, cut)] = Number(line.slice(cut + 1));
  }
  return layout;
}

test('FFI struct layouts match the pinned llama.cpp headers field by field', () => {
  const layout = compileLayoutProbe();
  for (const { c, type } of structs) {
    assert.equal(koffi.sizeof(type), layout[`${c} sizeof`], `${c} size`);
    for (const field of fieldsOf(type)) {
      assert.equal(koffi.offsetof(type, field), layout[`${c} ${field}`], `${c}.${field} offset`);
    }
  }
});
