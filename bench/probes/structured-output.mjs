#!/usr/bin/env node
// What a grammar costs and what speculation gives within one: the same prompts decoded greedily as
// free text, within a JSON schema's grammar plainly, and within it speculatively (--spec auto with
// the draft model), in one process, rotated. Prints each mode's decode tokens/s (median over the
// prompts) and the ratios; the speculative and plain constrained outputs are compared token for token.
// A second round (--rounds 2) asks the same prompts again: the suffix drafter then replays answers it
// has seen, which says how fast a repeated request is, not a new one.
// Usage (after `npm run build`):
//   node bench/probes/structured-output.mjs --model M [--draft-model D] [-n 4] [--max-tokens 128] [--rounds 1]
import { parseArgs } from 'node:util';
import { Engine } from '../../dist/src/engine/engine.js';
import { jsonSchemaGrammar } from '../../dist/src/generate/json-grammar.js';
import { median } from '../../dist/src/bench/stats.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    'draft-model': { type: 'string' },
    n: { type: 'string', short: 'n', default: '4' },
    'max-tokens': { type: 'string', default: '128' },
    rounds: { type: 'string', default: '1' },
  },
});
// A list of records with repeated keys: the shape of a structured answer that n-gram and suffix drafting can follow.
const schema = {
  type: 'object',
  properties: {
    people: {
      type: 'array',
      items: { type: 'object', properties: { name: { type: 'string', maxLength: 24 }, age: { type: 'integer' }, city: { type: 'string', maxLength: 24 } }, required: ['name', 'age', 'city'], additionalProperties: false },
      minItems: 1,
      maxItems: 8,
    },
  },
  required: ['people'],
  additionalProperties: false,
};
const grammar = jsonSchemaGrammar(schema);
const questions = ['List some people and where they live, as JSON.', 'Describe a family as JSON.', 'Give me a JSON list of friends.', 'Write JSON about the people in a story.', 'List the characters of a fairy tale as JSON.', 'Who lives in the village? Answer in JSON.'];
const engine = await Engine.load({ model: values.model, draftModel: values['draft-model'], onNotice: () => {} });
const maxTokens = Number(values['max-tokens']);
const modes = {
  free: { speculation: 'off' },
  grammar: { speculation: 'off', grammar },
  'grammar+spec': { speculation: 'auto', grammar },
};
const rates = Object.fromEntries(Object.keys(modes).map((mode) => [mode, []]));
const outputs = {};
let identical = 0;
let compared = 0;
try {
  const prompts = await Promise.all(questions.slice(0, Number(values.n)).map((question) => engine.userPrompt(question)));
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const [p, prompt] of prompts.entries()) {
      const order = Object.keys(modes);
      for (let r = 0; r < (p + round) % order.length; r++) order.push(order.shift());
      for (const mode of order) {
        const result = await engine.complete(prompt, { maxTokens, temperature: 0, ...modes[mode] });
        rates[mode].push(result.stats.decodeTokensPerSecond);
        outputs[`${mode}:${p}`] = result.tokens;
        process.stderr.write(`${mode} prompt ${p}: ${result.tokens.length} tokens, ${result.stats.decodeTokensPerSecond.toFixed(1)} tok/s${result.stats.speculation ? `, tau ${result.stats.speculation.tau.toFixed(2)}` : ''}\n`);
      }
      compared++;
      if (JSON.stringify(outputs[`grammar:${p}`]) === JSON.stringify(outputs[`grammar+spec:${p}`])) identical++;
    }
  }
} finally {
  await engine.dispose();
}
const medians = Object.fromEntries(Object.entries(rates).map(([mode, list]) => [mode, median(list)]));
console.log(`decode tok/s (median of ${rates.free.length}): ${Object.entries(medians).map(([mode, rate]) => `${mode} ${rate.toFixed(1)}`).join(', ')}`);
console.log(`grammar / free ${(medians.grammar / medians.free).toFixed(3)}x; grammar+spec / grammar ${(medians['grammar+spec'] / medians.grammar).toFixed(3)}x; identical constrained outputs ${identical}/${compared}`);
