/** How request events travel from the worker: several to a message, a request's first and last at once. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventOutbox, FLUSH_INTERVAL_MS } from '../src/engine/event-outbox.js';
import type { AddressedEvent, WireEvent } from '../src/engine/protocol.js';
import type { GenerationResult } from '../src/generate/generate.js';

const chunk = (token: number): WireEvent => ({ type: 'chunk', chunk: { tokens: [token], text: `t${token}`, reasoning: '', content: `t${token}`, draftedBy: [null] } });
const done: WireEvent = { type: 'done', result: {} as GenerationResult };
const tokensOf = (events: AddressedEvent[]) => events.map(({ id, event }) => (event.type === 'chunk' ? `${id}:${event.chunk.tokens.join('+')}` : `${id}:${event.type}`));

test("a request's first event goes at once, later chunks wait for the interval and join, its end flushes everything in order", () => {
  let clock = 0;
  const posted: string[][] = [];
  const outbox = new EventOutbox((events) => posted.push(tokensOf(events)), () => clock);

  outbox.add(1, chunk(10));
  outbox.flushIfDue();
  assert.deepEqual(posted, [['1:10']], 'time to first token is not held back');

  clock += FLUSH_INTERVAL_MS / 4;
  outbox.add(1, chunk(11));
  outbox.add(2, chunk(20));
  outbox.flushIfDue();
  assert.deepEqual(posted.at(-1), ['1:11', '2:20'], "another request's first chunk takes the waiting ones along");

  for (const token of [12, 13]) {
    clock += FLUSH_INTERVAL_MS / 4;
    outbox.add(1, chunk(token));
    outbox.flushIfDue();
  }
  assert.equal(posted.length, 2, 'chunks within the interval wait');
  clock += FLUSH_INTERVAL_MS;
  outbox.add(2, chunk(21));
  outbox.flushIfDue();
  assert.deepEqual(posted.at(-1), ['1:12+13', '2:21'], "once the interval has passed, one message for every request, each request's waiting chunks as one");

  outbox.add(1, chunk(14));
  outbox.add(1, done);
  outbox.flushIfDue();
  assert.deepEqual(posted.at(-1), ['1:14', '1:done'], 'the end of a request goes at once');

  outbox.add(1, chunk(30));
  outbox.flushIfDue();
  assert.deepEqual(posted.at(-1), ['1:30'], 'an id used again starts a new request');
  outbox.flush();
  assert.equal(posted.length, 5, 'nothing waiting, nothing posted');
});

test('a joined chunk keeps every token with its text, its drafter and its piece', () => {
  const posted: AddressedEvent[][] = [];
  const outbox = new EventOutbox((events) => posted.push(events), () => 0);
  const piece = (token: number, text: string, reasoning: string, draftedBy: string | null): WireEvent => ({
    type: 'chunk',
    chunk: { tokens: [token], text, reasoning, content: text.slice(reasoning.length), draftedBy: [draftedBy], pieces: [text] },
  });
  outbox.add(7, piece(1, 'a', 'a', null));
  outbox.flushIfDue();
  outbox.add(7, piece(2, 'b', 'b', 'draft'));
  outbox.add(7, piece(3, 'c', '', 'ngram'));
  outbox.add(7, done);
  outbox.flushIfDue();
  assert.deepEqual(posted[1][0].event, { type: 'chunk', chunk: { tokens: [2, 3], text: 'bc', reasoning: 'b', content: 'c', draftedBy: ['draft', 'ngram'], pieces: ['b', 'c'] } });
  assert.equal(posted[1][1].event.type, 'done');
});
