/**
 * Hostile traffic against a real `tachyon serve` process on loopback: malformed and oversized
 * bodies, wrong types at every field, hostile unicode, wrong content types, slow and vanishing
 * clients, floods beyond the queue. The server must answer every request it can with a 4xx or
 * 2xx (never a 5xx), never crash, and still be healthy afterwards.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import { projectRoot } from './helpers/models.js';
import { seededUniform } from './helpers/random.js';

const MODEL = 'fuzz';
const random = seededUniform(20261201);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];

let child: ChildProcess;
let port: number;

before(async () => {
  child = spawn(
    process.execPath,
    [join(projectRoot, 'bin', 'tachyon.js'), 'serve', '--port', '0', '--threads', '1', '--gpu', 'cpu', '--alias', MODEL, '--max-queued', '8', '--parallel', '1'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  child.stdout!.setEncoding('utf8');
  let stdout = '';
  port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (text: string) => {
      stdout += text;
      const match = /at http:\/\/127\.0\.0\.1:(\d+) /.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`tachyon serve exited with ${code}`)));
  });
});
after(() => child.kill('SIGKILL'));

/**
 * What came back: an HTTP status; or the client left on purpose; or the server refused the rest of
 * an upload it had answered already (a 413 sent early is lost to the client's reset); or nothing
 * came before the deadline (a hang).
 */
type Outcome = number | 'vanished' | 'reset' | 'timeout';

interface RawRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  /** Sent in these pieces, `pauseMs` apart (slow clients). */
  body?: Buffer[];
  pauseMs?: number;
  /** Declared length; default the real one (a larger one with `vanish` makes a truncated upload). */
  contentLength?: number;
  /** Close the socket after sending, without waiting for an answer. */
  vanish?: boolean;
}

async function send(request: RawRequest): Promise<Outcome> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const body = request.body ?? [];
  const length = request.contentLength ?? body.reduce((sum, piece) => sum + piece.length, 0);
  const headers = { host: 'localhost', connection: 'close', 'content-length': String(length), ...request.headers };
  const head = `${request.method ?? 'POST'} ${request.path ?? '/v1/chat/completions'} HTTP/1.1\r\n${Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')}\r\n`;
  const received: Buffer[] = [];
  socket.on('data', (data: Buffer) => received.push(data));
  const closed = once(socket, 'close').catch(() => undefined);
  let failure: string | undefined;
  socket.on('error', (error: Error) => (failure = error.message));
  socket.write(head);
  for (const piece of body) {
    if (request.pauseMs) await new Promise((resolve) => setTimeout(resolve, request.pauseMs));
    if (!socket.destroyed) socket.write(piece);
  }
  if (request.vanish) {
    socket.destroy();
    return 'vanished';
  }
  const deadline = setTimeout(() => socket.destroy(new Error('timeout')), 60_000);
  await closed;
  clearTimeout(deadline);
  const status = /^HTTP\/1\.1 (\d{3})/.exec(Buffer.concat(received).toString('latin1'));
  if (status) return Number(status[1]);
  return failure === undefined || failure === 'timeout' ? 'timeout' : 'reset';
}

const json = (value: unknown) => [Buffer.from(JSON.stringify(value))];
const jsonHeaders = { 'content-type': 'application/json' };
const base = () => ({ model: MODEL, messages: [{ role: 'user', content: 'What is 2 + 3?' }], max_tokens: 2, temperature: 0 });
const FIELDS = ['model', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'seed', 'stop', 'n', 'stream', 'stream_options', 'frequency_penalty', 'presence_penalty', 'repetition_penalty', 'user', 'logprobs', 'top_logprobs', 'logit_bias', 'reasoning_effort', 'cache_salt', 'ignore_eos', 'response_format', 'grammar'];
const WRONG_VALUES: unknown[] = [null, true, false, 0, -1, 1.5, '', 'x', [], [1], {}, { a: 1 }, '\ud800'];
const HUGE_NUMBERS = ['1e308', '-1e308', '9007199254740993', '-9007199254740993', '1e-320', '-0', '1000000000', '123456789012345678901234567890'];
/** Formats a grammar cannot follow, or that llama.cpp must refuse rather than run. */
const HOSTILE_FORMATS: unknown[] = [
  { response_format: { type: 'json_schema', json_schema: { name: 'loop', schema: { $ref: '#/$defs/a', $defs: { a: { $ref: '#/$defs/a' } } } } } },
  { response_format: { type: 'json_schema', json_schema: { name: 'deep', schema: JSON.parse(`${'{"anyOf":['.repeat(1000)}{}${']}'.repeat(1000)}`) } } },
  { response_format: { type: 'json_schema', json_schema: { name: 'big', schema: { type: 'array', items: { type: 'string', maxLength: 1e9 }, minItems: -1 } } } },
  { response_format: { type: 'json_schema', json_schema: { name: 'odd', schema: { type: 'object', properties: { '"\\\n\u0000\ud800': { const: '\ud800' } }, required: ['"\\\n\u0000\ud800'] } } } },
  { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { enum: [] } } } },
  { grammar: 'root ::= root "a"' },
  { grammar: 'root ::= "a"{999999}' },
  { grammar: 'root ::= ("a"{1999}){1999}' },
  { grammar: 'root ::= [' },
  { grammar: '\u0000'.repeat(64) },
  { grammar: 'root ::= "\ud800"' },
];
const HOSTILE_TEXT = ['\ud800', '\udfff\ud800', '\u0000\u0001\u001f', '\u202e\u200f\u200b\ufeff', '\uffff\ufffe', '🦀'.repeat(500), 'e\u0301'.repeat(300), '<think></think><|end|><|user|>'];

/** The kinds of hostile request; each draws one request. */
const KINDS: Record<string, () => RawRequest> = {
  randomBytes: () => ({ headers: jsonHeaders, body: [Buffer.from(Array.from({ length: 1 + Math.floor(random() * 512) }, () => Math.floor(random() * 256)))] }),
  wrongTypeAtAField: () => ({ headers: jsonHeaders, body: json({ ...base(), [pick(FIELDS)]: pick(WRONG_VALUES) }) }),
  wrongTypeInAMessage: () => ({ headers: jsonHeaders, body: json({ ...base(), messages: [{ role: pick(['user', 'tool', 'robot', 1, null]), content: pick([...WRONG_VALUES, [{ type: 'image_url', image_url: 'x' }]]) }] }) }),
  hugeAndNegativeNumbers: () => {
    const field = pick(['max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'seed', 'n', 'frequency_penalty', 'repetition_penalty', 'top_logprobs']);
    const text = JSON.stringify(base()).replace(/}$/, `,"${field}":${pick(HUGE_NUMBERS)}}`);
    return { headers: jsonHeaders, body: [Buffer.from(text)] };
  },
  hostileUnicode: () => {
    const text = pick(HOSTILE_TEXT);
    const escaped = JSON.stringify({ ...base(), messages: [{ role: 'user', content: text }], stop: [text.slice(0, 4) || 'x'] });
    return { headers: jsonHeaders, body: [Buffer.from(escaped)] };
  },
  tokenizeEndpoints: () => ({
    path: pick(['/tokenize', '/detokenize']),
    headers: jsonHeaders,
    body: json(pick([{ content: pick(HOSTILE_TEXT) }, { prompt: pick(WRONG_VALUES) }, { messages: pick(WRONG_VALUES) }, { tokens: [pick([0, 1, 1023, 1024, -1, 1.5, 2 ** 31])] }, { tokens: pick(WRONG_VALUES) }, { content: 'x', with_pieces: pick(WRONG_VALUES) }])),
  }),
  hostileFormat: () => ({ headers: jsonHeaders, body: json({ ...base(), ...(pick(HOSTILE_FORMATS) as object) }) }),
  invalidUtf8: () => ({ headers: jsonHeaders, body: [Buffer.concat([Buffer.from('{"model":"fuzz","messages":[{"role":"user","content":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0xed, 0xa0, 0x80]), Buffer.from('"}],"max_tokens":2}')])] }),
  truncatedBody: () => {
    const full = Buffer.from(JSON.stringify(base()));
    return { headers: jsonHeaders, body: [full.subarray(0, Math.floor(random() * full.length))] };
  },
  oversizedBody: () => ({ headers: jsonHeaders, body: [Buffer.from(JSON.stringify({ ...base(), user: 'x'.repeat(1024 * 1024 + Math.floor(random() * 4096)) }))] }),
  wrongContentType: () => ({
    headers: { 'content-type': pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/json; charset=latin1', '']) },
    body: json(base()),
  }),
  deepNesting: () => {
    const depth = 1000 + Math.floor(random() * 100_000);
    return { headers: jsonHeaders, body: [Buffer.from(`{"model":"fuzz","messages":${'['.repeat(depth)}${']'.repeat(depth)}}`)] };
  },
  prototypeKeys: () => ({ headers: jsonHeaders, body: [Buffer.from(`{"model":"fuzz","messages":[{"role":"user","content":"hi"}],"${pick(['__proto__', 'constructor', 'prototype'])}":{"max_tokens":5,"polluted":true}}`)] }),
  wrongMethodOrPath: () => ({
    method: pick(['GET', 'PUT', 'DELETE', 'PATCH', 'POST']),
    path: pick(['/v1/chat/completions', '/v1/completions', '/v1/models/..%2f..%2fetc%2fpasswd', '/%00', `/${'a'.repeat(4000)}`, '/v1/embeddings', '/metrics?x=1']),
    headers: jsonHeaders,
    body: json(base()),
  }),
  slowClient: () => {
    const full = Buffer.from(JSON.stringify(base()));
    const cut = Math.floor(full.length / 2);
    return { headers: jsonHeaders, body: [full.subarray(0, cut), full.subarray(cut)], pauseMs: 50 };
  },
  vanishingUpload: () => {
    const full = Buffer.from(JSON.stringify(base()));
    return { headers: jsonHeaders, body: [full.subarray(0, Math.floor(full.length / 2))], contentLength: full.length, vanish: true };
  },
  vanishingReader: () => ({ headers: jsonHeaders, body: json({ ...base(), max_tokens: 200, stream: random() < 0.5 }), vanish: true }),
  tokenIdPrompt: () => ({
    path: '/v1/completions',
    headers: jsonHeaders,
    body: json({ model: MODEL, max_tokens: 2, prompt: Array.from({ length: 1 + Math.floor(random() * 8) }, () => pick([0, 1, 5, 1023, 1024, 99_999, 2 ** 31, -1, 1.5])) }),
  }),
  validButOdd: () => ({
    headers: jsonHeaders,
    body: json({
      ...base(),
      stream: random() < 0.5,
      seed: Math.floor(random() * 1e9),
      temperature: random() * 2,
      stop: ['\n'],
      n: 1 + Math.floor(random() * 3),
      logprobs: true,
      top_logprobs: Math.floor(random() * 21),
      logit_bias: { [pick([0, 5, 1023, 1024, 99_999])]: random() * 200 - 100 },
    }),
  }),
};

async function pool<T>(jobs: (() => Promise<T>)[], width: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const index = next++;
        results[index] = await jobs[index]();
      }
    }),
  );
  return results;
}

test('1,100 hostile requests of 19 kinds and a flood past the queue: no crash, no 5xx, healthy after', async () => {
  const kinds = Object.keys(KINDS);
  const drawn = Array.from({ length: 1100 }, (_, i) => kinds[i % kinds.length]);
  const outcomes = await pool(
    drawn.map((kind) => async () => ({ kind, outcome: await send(KINDS[kind]()) })),
    8,
  );
  // A flood: 40 streams at once against 1 turn and a queue of 8.
  const flood = await Promise.all(Array.from({ length: 40 }, () => send({ headers: jsonHeaders, body: json({ ...base(), max_tokens: 40, stream: true }) })));
  const counts = new Map<string, number>();
  for (const { kind, outcome } of outcomes) counts.set(`${kind} ${outcome}`, (counts.get(`${kind} ${outcome}`) ?? 0) + 1);
  for (const outcome of flood) counts.set(`flood ${outcome}`, (counts.get(`flood ${outcome}`) ?? 0) + 1);
  const summary = [...counts].sort().map(([key, count]) => `${key}: ${count}`);
  process.stdout.write(`# fuzz outcomes\n# ${summary.join('\n# ')}\n`);

  const all = [...outcomes.map(({ outcome }) => outcome), ...flood];
  assert.equal(child.exitCode, null, 'the server must not crash');
  assert.deepEqual(all.filter((outcome) => typeof outcome === 'number' && outcome >= 500), [], 'no 5xx');
  assert.deepEqual(all.filter((outcome) => outcome === 'timeout'), [], 'every request that waited got an answer');
  assert.ok(flood.includes(429), 'a flood past the queue meets 429');
  assert.ok(flood.includes(200), 'a flood past the queue still serves what fits');
  assert.ok(outcomes.some(({ outcome }) => outcome === 413), 'oversized bodies meet 413');
  const resets = outcomes.filter(({ outcome }) => outcome === 'reset');
  assert.ok(resets.every(({ kind }) => kind === 'oversizedBody'), 'only an oversized upload is cut off');
  const health = await fetch(`http://127.0.0.1:${port}/health`);
  assert.equal(health.status, 200);
  const answer = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, { method: 'POST', headers: jsonHeaders, body: JSON.stringify(base()) });
  assert.equal(answer.status, 200);
});
