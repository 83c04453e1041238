import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { f16BitsToF32, f32ToF16Bits, quantizeQ8_0 } from '../src/gguf/codec.js';
import { ensureTestModel, makeModel, MODEL_PRESETS } from '../src/gguf/make-model.js';
import { cacheDir, defaultModelPath } from '../src/paths.js';
import { describeModel, GgufError, readGgufHeader, readTensorBytes, readTensorData } from '../src/gguf/reader.js';
import { GgmlType, type GgufMetadataEntry, GgufValueType, LlamaTokenType, tensorByteSize } from '../src/gguf/types.js';
import { buildBuiltinVocab, IM_END_TOKEN_ID, IM_START_TOKEN_ID } from '../src/gguf/vocab.js';
import { kv, writeGguf } from '../src/gguf/writer.js';

let scratch = '';
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'tachyon-gguf-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function expectGgufError(path: string, code: GgufError['code'], message: RegExp): Promise<void> {
  await assert.rejects(readGgufHeader(path), (error: unknown) => {
    assert.ok(error instanceof GgufError, `expected GgufError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    assert.ok(!error.message.includes('\n'), 'message is one line');
    return true;
  });
}

/** Minimal hand-built header bytes, for corruptions the writer refuses to produce. */
function header(parts: { version?: number; tensors?: bigint; kvs?: bigint; body?: Buffer[] }): Buffer {
  const fixed = Buffer.alloc(24);
  fixed.write('GGUF', 0, 'latin1');
  fixed.writeUInt32LE(parts.version ?? 3, 4);
  fixed.writeBigUInt64LE(parts.tensors ?? 0n, 8);
  fixed.writeBigUInt64LE(parts.kvs ?? 0n, 16);
  return Buffer.concat([fixed, ...(parts.body ?? [])]);
}

function u64(value: bigint): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64LE(value);
  return bytes;
}

function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32LE(value);
  return bytes;
}

function ggufString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([u64(BigInt(bytes.length)), bytes]);
}

function tensorInfo(name: string, dims: number[], type: number, offset: bigint): Buffer {
  return Buffer.concat([ggufString(name), u32(dims.length), ...dims.map((dim) => u64(BigInt(dim))), u32(type), u64(offset)]);
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

function seededValues(count: number, scale: number): Float32Array {
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = Math.sin(i * 12.9898 + 78.233) * scale;
  return values;
}

describe('type table', () => {
  test('block and type sizes match ggml', () => {
    assert.equal(tensorByteSize(GgmlType.Q8_0, [32, 2]), 68);
    assert.equal(tensorByteSize(GgmlType.Q4_K, [256]), 144);
    assert.equal(tensorByteSize(GgmlType.Q6_K, [512, 3]), 6 * 210);
    assert.equal(tensorByteSize(GgmlType.Q4_0, [64]), 36);
    assert.equal(tensorByteSize(GgmlType.IQ4_XS, [256]), 136);
    assert.equal(tensorByteSize(GgmlType.BF16, [10, 10]), 200);
  });

  test('rejects rows that are not whole blocks and unknown types', () => {
    assert.throws(() => tensorByteSize(GgmlType.Q8_0, [33]), /not a multiple of its block size 32/);
    assert.throws(() => tensorByteSize(99, [32]), /unknown ggml tensor type 99/);
  });
});

describe('float16 and Q8_0 encoding', () => {
  test('f32 → f16 rounds to nearest even, with subnormals and overflow', () => {
    assert.equal(f32ToF16Bits(1), 0x3c00);
    assert.equal(f32ToF16Bits(-2), 0xc000);
    assert.equal(f32ToF16Bits(-0), 0x8000);
    assert.equal(f32ToF16Bits(65504), 0x7bff);
    assert.equal(f32ToF16Bits(65520), 0x7c00, 'halfway to 65536 rounds to even = infinity');
    assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00, 'tie goes to the even mantissa');
    assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02, 'tie goes to the even mantissa');
    assert.equal(f32ToF16Bits(2 ** -24), 0x0001);
    assert.equal(f32ToF16Bits(2 ** -25), 0x0000, 'tie between 0 and the smallest subnormal');
    assert.equal(f32ToF16Bits(3 * 2 ** -26), 0x0001);
    assert.equal(f32ToF16Bits(Infinity), 0x7c00);
    assert.equal(f32ToF16Bits(NaN) & 0x7e00, 0x7e00);
    for (const value of [0.1, -3.14159, 1e-5, 12345.678]) {
      // Relative half-ulp for normals; half the subnormal step (2^-25) below 2^-14.
      assert.ok(Math.abs(f16BitsToF32(f32ToF16Bits(value)) - value) <= Math.abs(value) * 2 ** -11 + 2 ** -25);
    }
  });

  test('Q8_0 block: f16 scale max|x|/127, then round(x/d)', () => {
    const values = Float32Array.from({ length: 32 }, (_, i) => (i - 16) / 8);
    const block = quantizeQ8_0(values);
    assert.equal(block.length, 34);
    const scale = f16BitsToF32(block.readUInt16LE(0));
    assert.ok(Math.abs(scale - 2 / 127) < 1e-5);
    assert.equal(block.readInt8(2), -127);
    assert.equal(block.readInt8(2 + 16), 0);
    assert.equal(block.readInt8(2 + 20), Math.round(0.5 / (2 / 127)));
    assert.deepEqual(quantizeQ8_0(new Float32Array(32)), Buffer.alloc(34), 'all-zero block has d = 0');
  });
});

describe('writer → reader round trip', () => {
  test('metadata of every type survives', async () => {
    const path = join(scratch, 'metadata.gguf');
    const metadata = new Map<string, GgufMetadataEntry>([
      ['general.architecture', kv.string('llama')],
      ['test.unicode', kv.string('héllo ▁wörld 🙂')],
      ['test.u8', kv.u8(255)],
      ['test.i8', kv.i8(-128)],
      ['test.u16', kv.u16(65535)],
      ['test.i16', kv.i16(-32768)],
      ['test.u32', kv.u32(4_000_000_000)],
      ['test.i32', kv.i32(-2_000_000_000)],
      ['test.f32', kv.f32(0.1)],
      ['test.bool', kv.bool(true)],
      ['test.u64', kv.u64(2n ** 63n + 5n)],
      ['test.i64', kv.i64(-(2n ** 62n))],
      ['test.f64', kv.f64(Math.PI)],
      ['test.strings', kv.strings(['a', '', 'ü', '<0x0A>'])],
      ['test.i32s', kv.i32s([1, -2, 3])],
      ['test.u32s', kv.u32s(new Uint32Array([7, 8]))],
      ['test.f32s', kv.f32s([0.5, -1.25])],
      ['test.bools', kv.bools([true, false])],
      ['test.u64s', kv.array(GgufValueType.UINT64, [1n, 2n ** 64n - 1n])],
      ['test.nested', kv.array(GgufValueType.ARRAY, [kv.i32s([1, 2]), kv.strings(['x'])])],
    ]);
    await writeGguf(path, { metadata, tensors: [] });
    const info = await readGgufHeader(path);
    assert.equal(info.version, 3);
    assert.equal(info.tensorCount, 0);
    assert.deepEqual([...info.metadata.keys()], [...metadata.keys()]);
    const value = (key: string): unknown => info.metadata.get(key)?.value;
    assert.equal(value('test.unicode'), 'héllo ▁wörld 🙂');
    assert.equal(value('test.u8'), 255);
    assert.equal(value('test.i8'), -128);
    assert.equal(value('test.u16'), 65535);
    assert.equal(value('test.i16'), -32768);
    assert.equal(value('test.u32'), 4_000_000_000);
    assert.equal(value('test.i32'), -2_000_000_000);
    assert.equal(value('test.f32'), Math.fround(0.1));
    assert.equal(value('test.bool'), true);
    assert.equal(value('test.u64'), 2n ** 63n + 5n);
    assert.equal(value('test.i64'), -(2n ** 62n));
    assert.equal(value('test.f64'), Math.PI);
    assert.deepEqual(value('test.strings'), ['a', '', 'ü', '<0x0A>']);
    assert.deepEqual(value('test.i32s'), new Int32Array([1, -2, 3]));
    assert.deepEqual(value('test.u32s'), new Uint32Array([7, 8]));
    assert.deepEqual(value('test.f32s'), new Float32Array([0.5, -1.25]));
    assert.deepEqual(value('test.bools'), [true, false]);
    assert.deepEqual(value('test.u64s'), new BigUint64Array([1n, 2n ** 64n - 1n]));
    const nested = info.metadata.get('test.nested');
    assert.equal(nested?.type, GgufValueType.ARRAY);
    assert.deepEqual(nested?.value, [
      { type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, value: new Int32Array([1, 2]) },
      { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: ['x'] },
    ]);
  });

  test('F32, F16 and Q8_0 tensors survive (within quantization error), streamed in chunks', async () => {
    const path = join(scratch, 'tensors.gguf');
    const f32 = seededValues(3 * 5, 10);
    const f16 = seededValues(64 * 3, 2);
    const q8 = seededValues(64 * 4, 0.05);
    await writeGguf(path, {
      metadata: [['general.architecture', kv.string('test')]],
      tensors: [
        { name: 'a.f32', dims: [3, 5], type: GgmlType.F32, data: f32 },
        { name: 'b.f16', dims: [64, 3], type: GgmlType.F16, data: () => [f16.subarray(0, 64), f16.subarray(64)] },
        { name: 'c.q8', dims: [64, 4], type: GgmlType.Q8_0, data: function* () { for (let r = 0; r < 4; r++) yield q8.subarray(r * 64, r * 64 + 64); } },
      ],
      alignment: 64,
    });
    const info = await readGgufHeader(path);
    assert.equal(info.alignment, 64);
    assert.equal(info.dataOffset % 64, 0);
    assert.deepEqual(info.tensors.map((t) => [t.name, t.typeName, t.dims]), [
      ['a.f32', 'F32', [3, 5]],
      ['b.f16', 'F16', [64, 3]],
      ['c.q8', 'Q8_0', [64, 4]],
    ]);
    for (const tensor of info.tensors) assert.equal(tensor.fileOffset % 64, 0);
    assert.deepEqual(await readTensorData(info, 'a.f32'), f32);
    const f16Back = await readTensorData(info, 'b.f16');
    f16.forEach((value, i) => assert.ok(Math.abs(f16Back[i] - value) <= Math.abs(value) * 2 ** -11 + 1e-7));
    const q8Back = await readTensorData(info, 'c.q8');
    for (let block = 0; block < q8.length / 32; block++) {
      const slice = q8.subarray(block * 32, block * 32 + 32);
      // Half a quantization step, plus the f16 rounding of the scale times |q| ≤ 127.
      const step = Math.max(...slice.map(Math.abs)) / 127;
      const tolerance = step * (0.5 + 127 * 2 ** -11) + 1e-7;
      slice.forEach((value, i) => assert.ok(Math.abs(q8Back[block * 32 + i] - value) <= tolerance));
    }
    assert.equal((await readTensorBytes(info, 'c.q8')).length, 4 * 2 * 34);
  });

  test('a failing tensor source leaves neither the target nor a temp file behind', async () => {
    const folder = await mkdtemp(join(scratch, 'atomic-'));
    const path = join(folder, 'broken.gguf');
    await assert.rejects(
      writeGguf(path, {
        metadata: [],
        tensors: [{ name: 'x', dims: [32], type: GgmlType.F32, data: () => { throw new Error('generator failed'); } }],
      }),
      /generator failed/,
    );
    assert.deepEqual(await readdir(folder), []);
  });

  test('rejects a chunk stream with the wrong number of values', async () => {
    await assert.rejects(
      writeGguf(join(scratch, 'short.gguf'), { metadata: [], tensors: [{ name: 'x', dims: [64], type: GgmlType.Q8_0, data: () => [new Float32Array(32)] }] }),
      /got 32 values, expected 64/,
    );
  });
});

describe('reader rejects broken files with one clear line', () => {
  test('bad magic', async () => {
    const path = join(scratch, 'bad-magic.gguf');
    await writeFile(path, Buffer.from('GGML\x03\x00\x00\x00 not a gguf file at all', 'latin1'));
    await expectGgufError(path, 'BAD_MAGIC', /^not a GGUF file \(bad magic\)$/);
    const empty = join(scratch, 'empty.gguf');
    await writeFile(empty, Buffer.alloc(0));
    await expectGgufError(empty, 'BAD_MAGIC', /bad magic/);
  });

  test('unsupported version', async () => {
    const path = join(scratch, 'version7.gguf');
    await writeFile(path, header({ version: 7 }));
    await expectGgufError(path, 'UNSUPPORTED_VERSION', /^unsupported GGUF version 7$/);
    await writeFile(path, header({ version: 1 }));
    await expectGgufError(path, 'UNSUPPORTED_VERSION', /^unsupported GGUF version 1$/);
  });

  test('truncated file (tiny model cut in half)', async () => {
    const model = await readFile(await ensureTestModel('tiny', 'f16', 1));
    const path = join(scratch, 'half.gguf');
    await writeFile(path, model.subarray(0, Math.floor(model.length / 2)));
    await expectGgufError(path, 'TRUNCATED', /^truncated GGUF: tensor data needs \d+ bytes but file has \d+/);
    await writeFile(path, model.subarray(0, 3000));
    await expectGgufError(path, 'CORRUPT', /truncated GGUF|runs past the end of the file/);
  });

  test('absurd string length', async () => {
    const path = join(scratch, 'huge-string.gguf');
    await writeFile(path, header({ kvs: 1n, body: [u64(2n ** 60n), Buffer.from('general.architecture')] }));
    await expectGgufError(path, 'CORRUPT', /metadata key length 1152921504606846976 at offset 24 runs past the end of the file/);
  });

  test('absurd array and key counts', async () => {
    const path = join(scratch, 'huge-array.gguf');
    const arrayKv = Buffer.concat([ggufString('tokenizer.ggml.tokens'), u32(GgufValueType.ARRAY), u32(GgufValueType.STRING), u64(2n ** 40n)]);
    await writeFile(path, header({ kvs: 1n, body: [arrayKv] }));
    await expectGgufError(path, 'CORRUPT', /array length of 'tokenizer.ggml.tokens' 1099511627776 .* runs past the end/);
    await writeFile(path, header({ kvs: 2n ** 62n }));
    await expectGgufError(path, 'CORRUPT', /metadata key count/);
  });

  test('unknown tensor type and partial blocks', async () => {
    const path = join(scratch, 'bad-tensor.gguf');
    await writeFile(path, header({ tensors: 1n, body: [tensorInfo('w', [32], 99, 0n), Buffer.alloc(64)] }));
    await expectGgufError(path, 'UNKNOWN_TENSOR_TYPE', /^unknown ggml tensor type 99 \(tensor 'w'\)$/);
    await writeFile(path, header({ tensors: 1n, body: [tensorInfo('w', [33], GgmlType.Q8_0, 0n), Buffer.alloc(64)] }));
    await expectGgufError(path, 'CORRUPT', /'w' of type Q8_0 has 33 elements per row/);
  });
});

describe('generated models', () => {
  test('same seed gives the same bytes, another seed does not', async () => {
    const first = join(scratch, 'seed-a.gguf');
    const second = join(scratch, 'seed-b.gguf');
    const third = join(scratch, 'seed-c.gguf');
    await makeModel({ out: first, preset: 'tiny', quant: 'q8_0', seed: 123 });
    await makeModel({ out: second, preset: 'tiny', quant: 'q8_0', seed: 123 });
    await makeModel({ out: third, preset: 'tiny', quant: 'q8_0', seed: 124 });
    assert.equal(await sha256(first), await sha256(second));
    assert.notEqual(await sha256(first), await sha256(third));
  });

  test('tiny model: shapes, tokenizer metadata and description', async () => {
    const fractions: number[] = [];
    const path = join(scratch, 'tiny.gguf');
    const result = await makeModel({ out: path, preset: 'tiny', quant: 'f16', seed: 5, onProgress: (f) => fractions.push(f) });
    assert.equal(fractions.at(-1), 1);
    assert.ok(fractions.every((f, i) => i === 0 || f >= fractions[i - 1]));
    const info = await readGgufHeader(path);
    const model = describeModel(info);
    const preset = MODEL_PRESETS.tiny;
    assert.equal(model.architecture, 'llama');
    assert.equal(model.embeddingLength, preset.embeddingLength);
    assert.equal(model.blockCount, preset.blockCount);
    assert.equal(model.headCount, preset.headCount);
    assert.equal(model.headCountKv, preset.headCountKv);
    assert.equal(model.contextLength, preset.contextLength);
    assert.equal(model.vocabSize, buildBuiltinVocab().tokens.length);
    assert.equal(model.bosTokenId, 1);
    assert.equal(model.eosTokenId, 2);
    assert.equal(model.eotTokenId, IM_END_TOKEN_ID);
    assert.equal(model.tokenizerModel, 'llama');
    assert.match(model.chatTemplate ?? '', /<\|im_start\|>/);
    assert.equal(model.parameterCount, result.parameterCount);
    assert.equal(model.fileType, 1);
    const embd = info.tensors.find((t) => t.name === 'token_embd.weight');
    assert.deepEqual(embd?.dims, [preset.embeddingLength, model.vocabSize]);
    assert.equal(info.tensors.find((t) => t.name === 'blk.0.attn_k.weight')?.dims[1], 32);
    assert.equal(info.tensors.find((t) => t.name === 'blk.1.ffn_norm.weight')?.typeName, 'F32');
    const norm = await readTensorData(info, 'output_norm.weight');
    assert.ok(norm.every((value) => value === 1));
    const weights = await readTensorData(info, 'blk.0.ffn_up.weight');
    const std = Math.sqrt(weights.reduce((sum, value) => sum + value * value, 0) / weights.length);
    assert.ok(std > 0.015 && std < 0.025, `std ${std}`);
  });

  test('ensureTestModel caches under <project>/.cache/models', async () => {
    const path = await ensureTestModel('tiny', 'q8_0', 99);
    assert.ok(path.startsWith(join(cacheDir, 'models')));
    const before = await stat(path);
    assert.equal(await ensureTestModel('tiny', 'q8_0', 99), path);
    assert.equal((await stat(path)).mtimeMs, before.mtimeMs);
    const info = await readGgufHeader(path);
    assert.equal(describeModel(info).fileType, 7);
    assert.ok(info.tensors.filter((t) => t.dims.length === 2).every((t) => t.typeName === 'Q8_0'));
  });
});

describe('built-in vocabulary', () => {
  test('layout: specials, 256 byte tokens, ChatML markers, unique pieces', () => {
    const vocab = buildBuiltinVocab();
    assert.deepEqual(vocab.tokens.slice(0, 3), ['<unk>', '<s>', '</s>']);
    assert.equal(vocab.tokens[3], '<0x00>');
    assert.equal(vocab.tokens[3 + 10], '<0x0A>');
    assert.equal(vocab.tokens[258], '<0xFF>');
    assert.equal(vocab.tokens[IM_START_TOKEN_ID], '<|im_start|>');
    assert.equal(vocab.tokenTypes[IM_END_TOKEN_ID], LlamaTokenType.CONTROL);
    assert.equal(new Set(vocab.tokens).size, vocab.tokens.length);
    assert.ok(vocab.tokens.includes('▁the') && vocab.tokens.includes('Hello'));
  });

  test('pads to the Qwen2.5 vocabulary size with unused tokens', () => {
    const vocab = buildBuiltinVocab(151_936);
    assert.equal(vocab.tokens.length, 151_936);
    assert.equal(vocab.tokens[vocab.baseSize], '<unused_0>');
    assert.equal(vocab.tokenTypes[151_935], LlamaTokenType.UNUSED);
  });
});

describe('testbed model', () => {
  test('target.gguf header', async () => {
    const info = await readGgufHeader(defaultModelPath);
    const model = describeModel(info);
    assert.equal(model.architecture, 'llama');
    assert.equal(model.vocabSize, 1024);
    assert.equal(model.contextLength, 1024);
    assert.equal(model.embeddingLength, 256);
    assert.equal(model.blockCount, 6);
    assert.ok((model.chatTemplate ?? '').length > 0);
    assert.equal(model.parameterCount, 5_639_424);
    assert.equal(info.fileSize, 11_312_192);
  });
});
