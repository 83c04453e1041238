/**
 * Structured output: JSON schemas become GBNF grammars that llama.cpp's grammar engine follows
 * (checked token by token on the testbed's vocabulary), and the engine decodes within them,
 * speculation and batching as lossless as without them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { JSON_OBJECT_GRAMMAR, JsonSchemaError, jsonSchemaGrammar } from '../src/generate/json-grammar.js';
import { Grammar, GrammarError } from '../src/llama/grammar.js';
import type { Model } from '../src/llama/model.js';
import { Engine } from '../src/engine/engine.js';
import { loadModel, testbedDraft, testbedTarget } from './helpers/models.js';
import { solo, together } from './helpers/engine.js';
import { verifyEveryDraft } from './helpers/server.js';
import { NEAR_TIE } from './helpers/greedy.js';
import { withoutRefused } from '../src/speculative/constrained-trees.js';
import { TokenTree } from '../src/speculative/tree.js';
import type { TokenConstraint } from '../src/generate/sampling.js';
import { grammarConstraint } from '../src/reasoning/answer-constraint.js';
import { thinkingTagTokens } from '../src/reasoning/segments.js';
import { top2Gap } from '../src/bench/stats.js';

/** Whether the grammar takes `text` whole, token by token as the testbed tokenizes it, and may end there. */
function follows(model: Model, gbnf: string, text: string): boolean {
  const grammar = Grammar.compile(model, gbnf);
  try {
    for (const token of model.tokenizer.tokenize(text, { addSpecial: false, parseSpecial: false })) {
      if (!grammar.allows(token)) return false;
      grammar.accept(token);
    }
    return grammar.allows(model.tokenizer.special.eos);
  } finally {
    grammar.dispose();
  }
}

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 5 },
    age: { type: 'integer' },
    nick: { type: ['string', 'null'] },
    tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 2 },
  },
  required: ['name', 'age'],
  additionalProperties: false,
};

const TREE = {
  $ref: '#/$defs/node',
  $defs: { node: { type: 'object', properties: { value: { type: 'integer' }, children: { type: 'array', items: { $ref: '#/$defs/node' } } }, required: ['value', 'children'] } },
};

const cases: { name: string; grammar: () => string; valid: string[]; invalid: string[] }[] = [
  {
    name: 'an object with required, optional, nullable, enum and bounded members',
    grammar: () => jsonSchemaGrammar(PERSON),
    valid: ['{"name": "Ann", "age": 30}', '{"name":"Bo","age":-4,"tags":["a","b"]}', '{"name":"Cy","age":0,"nick":null}', '{ "name": "Di", "age": 1, "nick": "x\\"y", "tags": [] }'],
    invalid: [
      '{"name": "Annabel", "age": 1}',
      '{"name":"A","age":1.5}',
      '{"name":"A"}',
      '{"name":"A","age":1,"extra":2}',
      '{"name":"A","age":1,"tags":["c"]}',
      '{"name":"A","age":1,"tags":["a","a","a"]}',
      '{"name":"A","age":1,}',
      '{"name":"A","age":01}',
      '{"name":"A","age":1} trailing',
    ],
  },
  {
    name: 'a recursive definition',
    grammar: () => jsonSchemaGrammar(TREE),
    valid: ['{"value": 1, "children": []}', '{"value": 1, "children": [{"value": 2, "children": [{"value": 3, "children": []}]}]}'],
    invalid: ['{"value": 1}', '{"value": 1, "children": [{"value": "2", "children": []}]}'],
  },
  {
    name: 'alternatives, constants and the empty schema',
    grammar: () => jsonSchemaGrammar({ type: 'array', items: { anyOf: [{ const: 'x' }, { type: 'number' }, {}] }, minItems: 2 }),
    valid: ['["x", 1.5e3]', '[null, {"any": [true]}]'],
    invalid: ['["x"]', '[1, 2,]', '[1 2]'],
  },
  {
    name: 'any JSON object (response_format json_object)',
    grammar: () => JSON_OBJECT_GRAMMAR,
    valid: ['{}', '{"a": [1, {"b": null}], "c": "d\\u00e9"}'],
    invalid: ['[1]', '"x"', '{"a": }', "{'a': 1}"],
  },
];

describe('JSON schema grammars, followed by llama.cpp', () => {
  let model: Model;
  before(async () => (model = await loadModel(testbedTarget)));

  for (const { name, grammar, valid, invalid } of cases) {
    test(name, () => {
      const gbnf = grammar();
      for (const text of valid) assert.ok(follows(model, gbnf, text), `should be allowed: ${text}\n${gbnf}`);
      for (const text of invalid) assert.ok(!follows(model, gbnf, text), `should be refused: ${text}\n${gbnf}`);
    });
  }

  test('what a grammar cannot keep is refused by name, not ignored', () => {
    const refusals: [unknown, RegExp][] = [
      [{ type: 'string', pattern: '^a+$' }, /^\/pattern: 'pattern' is not supported/],
      [{ type: 'object', properties: { when: { type: 'string', format: 'date-time' } } }, /^\/properties\/when\/format: /],
      [{ type: 'integer', minimum: 0 }, /^\/minimum: /],
      [{ type: 'object', required: ['x'] }, /'required' names 'x'/],
      [{ type: 'object', properties: { a: {} }, required: ['toString'] }, /'required' names 'toString'/],
      [{ $ref: 'https://example.com/schema.json' }, /only local references/],
      [{ $ref: '#/$defs/nowhere' }, /is not defined/],
      [{ type: 'date' }, /not a JSON Schema type/],
      [false, /allows no value/],
      [{ type: 'string', maxLength: 5000 }, /'maxLength' above 2000/],
      [JSON.parse(`${'{"type":"array","items":'.repeat(1000)}{}${'}'.repeat(1000)}`), /nested too deeply/],
    ];
    for (const [schema, message] of refusals) assert.throws(() => jsonSchemaGrammar(schema), (error: unknown) => error instanceof JsonSchemaError && message.test(error.message), JSON.stringify(schema));
  });

  test('a grammar llama.cpp cannot parse is a GrammarError, not a crash', () => {
    assert.throws(() => Grammar.compile(model, 'root ::= undefined-rule'), GrammarError);
    const grammar = Grammar.compile(model, 'root ::= "yes"');
    try {
      assert.throws(() => grammar.accept(model.tokenizer.tokenize('no', { addSpecial: false })[0]), GrammarError, 'a token the grammar refuses is never handed to llama.cpp (which would abort)');
    } finally {
      grammar.dispose();
    }
  });
});

/** Tokens must strictly increase (a constraint with a state, as a grammar); counts the copies alive. */
class Increasing implements TokenConstraint {
  static alive = 0;
  constructor(private last = -1) {
    Increasing.alive++;
  }
  allows(token: number): boolean {
    return token > this.last;
  }
  restrict(logits: Float32Array): Float32Array {
    return logits.map((logit, token) => (this.allows(token) ? logit : -Infinity));
  }
  accept(token: number): void {
    assert.ok(this.allows(token));
    this.last = token;
  }
  fork(): Increasing {
    return new Increasing(this.last);
  }
  dispose(): void {
    Increasing.alive--;
  }
}

test('drafts a constraint refuses are cut with everything after them, before they are priced', () => {
  const tree = new TokenTree(1);
  const [, three] = tree.addPath([2, 3, 9, 4, 5], [0.9, 0.8, 0.7, 0.6, 0.5], 'chain'); // cut at 4 (after 9)
  tree.addPath([8, 9], [0.3, 0.2], 'branch', three); // 2 3 8 9: allowed
  tree.addPath([0, 7], [0.5, 0.4], 'refused'); // cut at 0
  const pruned = withoutRefused(tree, new Increasing(1));
  const paths = Array.from({ length: pruned.size - 1 }, (_, i) => pruned.pathTo(i + 1).join(' '));
  assert.deepEqual(paths.sort(), ['2', '2 3', '2 3 8', '2 3 8 9', '2 3 9'].sort());
  assert.equal(Increasing.alive, 0, 'every copy of the state is disposed');
});

describe('decoding within a grammar', () => {
  let engine: Engine;
  before(async () => (engine = await Engine.load({ model: testbedTarget, draftModel: testbedDraft, gpu: 'cpu', threads: 1, ...verifyEveryDraft })));
  after(() => engine.dispose());

  const grammar = jsonSchemaGrammar(PERSON);

  /**
   * `actual` is `reference` (plain decoding) token for token, or first differs where plain
   * decoding's choice among the tokens the grammar allowed was a near-tie (batched and
   * single-token kernels round differently).
   */
  async function assertSameWithinGrammar(prompt: readonly number[], actual: readonly number[], reference: readonly number[]): Promise<void> {
    const mismatch = reference.findIndex((token, i) => actual[i] !== token);
    if (mismatch === -1) return assert.equal(actual.length, reference.length);
    const model = await loadModel(testbedTarget);
    const state = grammarConstraint(model, grammar, thinkingTagTokens(model.tokenizer), prompt);
    try {
      for (const token of reference.slice(0, mismatch)) state.accept(token);
      const gap = top2Gap(state.restrict(await engine.logitsAfter(prompt, reference.slice(0, mismatch))));
      assert.ok(gap < NEAR_TIE, `output differs at token ${mismatch} where the top-2 gap among allowed tokens was ${gap} (not a near-tie)`);
    } finally {
      state.dispose();
    }
  }

  const questions = ['Describe a person as JSON.', 'What is 47 + 85?', 'Write a long bedtime story about a fox.'];

  test('greedy: speculation and batching give plain decoding\'s tokens, and every finished answer follows the schema', async () => {
    const prompts = await Promise.all(questions.map((question) => engine.userPrompt(question)));
    const base = { grammar, maxTokens: 300, temperature: 0 } as const;
    const plain = await solo(engine, prompts, { ...base, speculation: 'off' });
    const speculative = await solo(engine, prompts, { ...base, speculation: 'auto' });
    const batched = await together(engine, prompts, () => ({ ...base, speculation: 'auto' }));
    for (const [i, prompt] of prompts.entries()) {
      await assertSameWithinGrammar(prompt, speculative[i], plain[i]);
      await assertSameWithinGrammar(prompt, batched[i], plain[i]);
    }
    let finished = 0;
    let acceptedDrafts = 0;
    for (const prompt of prompts) {
      const result = await engine.complete(prompt, { ...base, speculation: 'auto' });
      for (const { accepted } of Object.values(result.stats.speculation!.drafters)) acceptedDrafts += accepted;
      if (result.stats.stopReason !== 'eos') continue;
      finished++;
      const answer = JSON.parse(result.content) as Record<string, unknown>;
      assert.equal(typeof answer.name, 'string');
      assert.ok((answer.name as string).length <= 5);
      assert.ok(Number.isInteger(answer.age));
      assert.deepEqual(Object.keys(answer).filter((key) => !['name', 'age', 'nick', 'tags'].includes(key)), []);
    }
    assert.ok(finished >= 2, `${finished} of ${prompts.length} answers ended within 300 tokens`);
    assert.ok(acceptedDrafts > 20, `drafts were verified within the grammar (${acceptedDrafts} accepted)`);
  });

  test('a reasoning model thinks first, free, and then answers within the grammar', async () => {
    const schema = jsonSchemaGrammar({ type: 'object', properties: { answer: { type: 'integer' } }, required: ['answer'] });
    const result = await engine.complete(await engine.userPrompt('What is 12 + 30?'), { grammar: schema, maxTokens: 300, temperature: 0 });
    assert.match(result.reasoning, /So 12 \+ 30 = 42\./, 'the thinking is the model\'s own prose');
    assert.ok(Number.isInteger((JSON.parse(result.content) as { answer: unknown }).answer), result.content);
    assert.match(result.text, /^<think>[^]*<\/think>\s*\{/);
    // A prompt that opens the thinking itself: the grammar waits for its close too.
    const opened = [...(await engine.userPrompt('What is 12 + 30?')), ...(await engine.tokenize('<think>'))];
    const continued = await engine.complete(opened, { grammar: schema, maxTokens: 300, temperature: 0 });
    assert.ok(Number.isInteger((JSON.parse(continued.content) as { answer: unknown }).answer), continued.content);
  });

  test('the draft model drafts within the grammar: its chains follow the answer, not the prose it would write', async () => {
    let steps = 0;
    let emitted = 0;
    for (const question of [...questions, 'Give me a JSON object.']) {
      const result = await engine.complete(await engine.userPrompt(question), { grammar, maxTokens: 120, temperature: 0, speculation: 'draft' });
      steps += result.stats.speculation!.steps;
      emitted += result.stats.speculation!.emitted;
    }
    // Drafting unconstrained (its chains cut where the grammar refuses them) gave 1.09 tokens a step here.
    assert.ok(emitted / steps > 1.7, `tau ${emitted / steps}`);
  });

  test('seeded sampling within a grammar: n-gram speculation reproduces plain decoding token for token', async () => {
    // The thinking closed in the prompt: the answer is held to the grammar from its first token.
    const prompt = [...(await engine.userPrompt('Describe a person as JSON.')), ...(await engine.tokenize('<think>\n</think>\n'))];
    const options = { grammar: JSON_OBJECT_GRAMMAR, maxTokens: 80, temperature: 0.8, seed: 11 } as const;
    const plain = await engine.complete(prompt, { ...options, speculation: 'off' });
    const speculative = await engine.complete(prompt, { ...options, speculation: 'ngram' });
    assert.deepEqual(speculative.tokens, plain.tokens);
    assert.match(plain.text, /^\s*\{/);
  });

  test('a thinking budget with a grammar is refused; a broken grammar fails its request alone', async () => {
    const prompt = await engine.userPrompt('What is 47 + 85?');
    await assert.rejects(engine.complete(prompt, { grammar, maxThinkingTokens: 10 }), GrammarError);
    const [broken, fine] = await Promise.allSettled([engine.complete(prompt, { grammar: 'root ::= nothing' }), engine.complete(prompt, { grammar, maxTokens: 8, temperature: 0 })]);
    assert.equal(broken.status, 'rejected');
    assert.ok((broken as PromiseRejectedResult).reason instanceof GrammarError);
    assert.equal(fine.status, 'fulfilled');
  });
});
