/**
 * /tokenize and /detokenize, as llama-server and vLLM have them (their clients count tokens before
 * sending a prompt): one route each answers both, with the union of their response fields.
 */
import type { FastifyInstance } from 'fastify';
import type { Engine } from '../engine/engine.js';
import { invalidRequest } from './errors.js';
import { chatMessages } from './openai.js';
import { DetokenizeRequest, TokenizeRequest } from './schemas.js';

export function addTokenizeRoutes(app: FastifyInstance, engine: Engine, checkModel: (requested: string) => void): void {
  const { contextSize, model } = engine.info;
  app.post<{ Body: TokenizeRequest }>('/tokenize', { schema: { body: TokenizeRequest } }, async (request) => {
    const body = request.body;
    if (body.model != null) checkModel(body.model);
    const tokens = await tokensOf(engine, body);
    const listed = body.with_pieces ? (await engine.tokenPieces(tokens)).map((piece, index) => ({ id: tokens[index], piece })) : tokens;
    return { tokens: listed, count: tokens.length, max_model_len: contextSize };
  });
  app.post<{ Body: DetokenizeRequest }>('/detokenize', { schema: { body: DetokenizeRequest } }, async (request) => {
    const { tokens } = request.body;
    if (request.body.model != null) checkModel(request.body.model);
    const outside = tokens.findIndex((token) => token >= model.vocabularySize);
    if (outside >= 0) throw invalidRequest(`tokens[${outside}] = ${tokens[outside]} is not a token id of this model (0..${model.vocabularySize - 1})`, 'tokens', 'invalid_value');
    const text = await engine.detokenize(tokens);
    return { content: text, prompt: text };
  });
}

/** The request's one input: llama-server's `content` (no BOS by default), vLLM's `prompt` (BOS by default) or chat `messages`. */
function tokensOf(engine: Engine, body: TokenizeRequest): Promise<number[]> {
  const given = (['content', 'prompt', 'messages'] as const).filter((field) => body[field] !== undefined);
  if (given.length !== 1) throw invalidRequest(`give exactly one of 'content', 'prompt' and 'messages' (got ${given.length === 0 ? 'none' : given.join(', ')})`, given[1] ?? 'content', 'invalid_value');
  if (body.messages !== undefined) return engine.chatPrompt(chatMessages({ messages: body.messages }));
  const addSpecial = body.add_special ?? body.add_special_tokens ?? body.prompt !== undefined;
  return engine.tokenize((body.content ?? body.prompt)!, { addSpecial });
}
