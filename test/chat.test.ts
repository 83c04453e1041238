/**
 * `tachyon chat` as a user meets it, in a real pseudo-terminal (tmux): streamed answers with the
 * thinking dimmed, a multi-turn history, /stats, Ctrl-C cancelling an answer but not the session,
 * /exit and Ctrl-D (also while an answer streams); and `tachyon run` reading its prompt from a pipe.
 */
import { join } from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatFormatter, type ChatMessage } from '../src/generate/chat.js';
import { packageRoot } from '../src/paths.js';
import { loadModel, testbedTarget } from './helpers/models.js';
import { tachyon, tachyonWithStdin } from './helpers/cli.js';
import { TerminalSession } from './helpers/terminal.js';
import { skipWithout } from './helpers/system-tools.js';

const cli = join(packageRoot, 'bin', 'tachyon.js');
// One thread: on a busy machine a second llama.cpp thread mostly waits for the first.
const chatCommand = (...flags: string[]) => [process.execPath, cli, 'chat', '--gpu', 'cpu', '--spec', 'off', '--threads', '1', ...flags];

const sessions: TerminalSession[] = [];
after(() => sessions.forEach((session) => session.close()));
function terminal(argv: string[]): TerminalSession {
  const session = new TerminalSession(argv);
  sessions.push(session);
  return session;
}

const DIM = '\x1b[2m';
/** The terminal tests run in tmux. */
const inTmux = { skip: skipWithout('tmux', 'tmux') };
const PROMPT = /^>>> $/m;

async function promptTokens(messages: ChatMessage[]): Promise<number> {
  const model = await loadModel(testbedTarget);
  return model.tokenizer.tokenize(ChatFormatter.forModel(model).render(messages)).length;
}

test('a chat streams answers with the thinking dimmed and keeps the conversation', inTmux, async () => {
  const chat = terminal(chatCommand('--max-tokens', '400'));
  await chat.waitFor(PROMPT);
  chat.type('What is 47 + 85?');
  await chat.waitFor(/The answer is 132\.\n>>> /);

  const styled = chat.screen(true);
  assert.ok(styled.includes(`${DIM}We need to compute 47 + 85.`), `thinking is dimmed:\n${JSON.stringify(styled)}`);
  const answerLine = styled.split('\n').find((line) => line.includes('The answer is 132.'))!;
  assert.ok(!answerLine.includes(DIM), `the answer is not dimmed: ${JSON.stringify(answerLine)}`);
  assert.doesNotMatch(chat.screen(), /<\/?think>/, 'the thinking tags are not printed');

  chat.type('/stats');
  await chat.waitFor(/statistics on/);
  chat.type('What is 59 + 29?');
  const screen = await chat.waitFor(/The answer is 88\.\n.*tokens \(eos\), \d+ thinking \(natural\) · prompt \d+ tok.*\n>>> /);
  // The second turn's prompt is the whole conversation: both questions and the first answer (its thinking left out).
  const shown = Number(/prompt (\d+) tok/.exec(screen)![1]);
  const history: ChatMessage[] = [
    { role: 'user', content: 'What is 47 + 85?' },
    { role: 'assistant', content: 'The answer is 132.' },
    { role: 'user', content: 'What is 59 + 29?' },
  ];
  assert.equal(shown, await promptTokens(history));

  chat.type('/exit');
  assert.equal(await chat.exitStatus(), 0);
});

/**
 * A chat streaming a story of up to `maxTokens` once `streamedChars` characters of it show. In a
 * context far beyond what the model was trained on, the testbed's stories run on until stopped.
 */
async function streamingStory(maxTokens: number, streamedChars: number) {
  const chat = terminal(chatCommand('--ctx-size', '8192', '--max-tokens', String(maxTokens), '--verbose'));
  await chat.waitFor(PROMPT);
  chat.type('Write a long bedtime story about a shy crow called Otto.');
  await chat.waitFor(new RegExp(`Otto\\.\\n[\\s\\S]{${streamedChars}}`));
  return chat;
}

test('Ctrl-C stops the answer being generated, not the session', inTmux, async () => {
  const chat = await streamingStory(8000, 200);
  chat.press('C-c');
  await chat.waitFor(/\(stopped\)\n.*tokens \(abort\).*\n>>> /);

  chat.type('/clear');
  await chat.waitFor(/conversation cleared/);
  chat.type('What is 47 + 85?');
  await chat.waitFor(/The answer is 132\./);
  chat.press('C-d');
  assert.equal(await chat.exitStatus(), 0);
});

test('Ctrl-D while an answer is being generated leaves once the answer is done', inTmux, async () => {
  // A story of 1,500 tokens: Ctrl-D arrives while it streams.
  const chat = await streamingStory(1500, 100);
  chat.press('C-d');
  assert.equal(await chat.exitStatus(), 0);
  assert.match(chat.screen(), /1500 tokens \(length\)/, 'the answer ran to its end');
});

test('a conversation that outgrows the context says so and the session goes on', inTmux, async () => {
  // llama.cpp rounds the context up to 256 cells: the story fills it.
  const chat = terminal(chatCommand('--ctx-size', '256', '--max-tokens', '1000'));
  await chat.waitFor(PROMPT);
  chat.type('Write a long bedtime story about a shy crow called Otto.');
  await chat.waitFor(/\(the context is full: \/clear starts a new conversation\)\n>>> /);
  // The story stays in the history, so the next question no longer fits: that turn is refused, not the session.
  chat.type('What is 47 + 85?');
  await chat.waitFor(/tachyon: prompt of \d+ tokens does not fit the context of 256 tokens.*\n>>> /);
  chat.type('/clear');
  chat.type('What is 47 + 85?');
  await chat.waitFor(/The answer is 132\./);
  chat.type('/exit');
  assert.equal(await chat.exitStatus(), 0);
});

test('tachyon run without a prompt on a terminal is a chat', inTmux, async () => {
  const chat = terminal([process.execPath, cli, 'run', '--gpu', 'cpu', '--threads', '1']);
  await chat.waitFor(PROMPT);
  chat.type('/help');
  await chat.waitFor(/\/clear\s+forget the conversation/);
  chat.type('/exit');
  assert.equal(await chat.exitStatus(), 0);
});

test('tachyon chat answers every line piped to it, though the input ends before the first answer does', async () => {
  const piped = await tachyonWithStdin('What is 47 + 85?\nWhat is 59 + 29?\n', 'chat', '--gpu', 'cpu', '--spec', 'off', '--threads', '1');
  assert.equal(piped.code, 0, piped.stderr);
  assert.match(piped.stdout, /The answer is 132\.[\s\S]*The answer is 88\./);
});

test('tachyon run reads its prompt from a pipe', async () => {
  const flags = ['--gpu', 'cpu', '--threads', '1', '--json'];
  const piped = await tachyonWithStdin('What is 2 + 3?\n', 'run', ...flags);
  assert.equal(piped.code, 0, piped.stderr);
  const given = await tachyon('run', 'What is 2 + 3?', ...flags);
  const [fromPipe, fromArgument] = [piped, given].map((result) => JSON.parse(result.stdout) as { text: string; tokens: number[]; stats: { promptTokens: number } });
  assert.match(fromPipe.text, /The answer is \d+\./);
  assert.equal(fromPipe.stats.promptTokens, fromArgument.stats.promptTokens);
  assert.deepEqual(fromPipe.tokens, fromArgument.tokens);

  const empty = await tachyonWithStdin('', 'run', ...flags);
  assert.equal(empty.code, 2);
  assert.match(empty.stderr, /no prompt: .*stdin was empty/);
});
