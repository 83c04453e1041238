/**
 * `tachyon chat` (and `tachyon run` without a prompt on a terminal): an interactive multi-turn chat
 * in the terminal, like `ollama run`. Answers stream as they are generated, the model's thinking
 * dimmed; Ctrl-C cancels the answer being generated, not the session.
 */
import { createInterface, type Interface } from 'node:readline';
import { Writable } from 'node:stream';
import type { Command } from 'commander';
import type { Engine, GenerateOptions } from '../engine/engine.js';
import type { ChatMessage } from '../generate/chat.js';
import type { GenerationChunk, GenerationResult } from '../generate/generate.js';
import { TrimmedSplitText } from '../reasoning/presentation.js';
import { UsageError } from './errors.js';
import { addGenerationFlags, formatStats, loadEngine, samplingFrom, type GenerationFlags } from './generation.js';

export interface ChatFlags extends GenerationFlags {
  system?: string;
  verbose?: boolean;
}

export function registerChat(program: Command): void {
  const command = program.command('chat').description('chat with the model in the terminal (multi-turn; /help lists the commands)');
  addGenerationFlags(command)
    .option('--system <text>', 'a system message that opens the conversation')
    .option('--verbose', 'print statistics after every answer (toggle with /stats)')
    .action(async (flags: ChatFlags) => chatCommand(flags));
}

export async function chatCommand(flags: ChatFlags): Promise<void> {
  const engine = await loadEngine(flags);
  try {
    if (!engine.info.model.chatTemplate) throw new UsageError(`${engine.info.modelPath} has no chat template to hold a conversation; use tachyon run --no-chat PROMPT`);
    await new ChatSession(engine, samplingFrom(flags), flags).run();
  } finally {
    await engine.dispose();
  }
}

const HELP = [
  '/exit, /bye   leave (or Ctrl-D)',
  '/stats        statistics after each answer: on/off',
  '/clear        forget the conversation',
  '/help         this list',
  'Ctrl-C        stop the answer being generated',
].join('\n');

/** Dims text with ANSI codes, only when the output is a terminal that wants colour. */
function dimmer(stream: NodeJS.WriteStream): (text: string) => string {
  const on = stream.isTTY === true && !process.env.NO_COLOR;
  return (text) => (on ? `\x1b[2m${text}\x1b[22m` : text);
}

/**
 * The line editor's view of the terminal. While an answer streams, the editor's echo of keys typed
 * ahead is held back (it would land inside the answer); the next prompt shows the typed line.
 */
class EditorOutput extends Writable {
  muted = false;

  constructor(private readonly terminal: NodeJS.WriteStream) {
    super();
  }

  get columns(): number | undefined {
    return this.terminal.columns;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.muted) done();
    else this.terminal.write(chunk, done);
  }
}

/** One conversation: the history is re-rendered with the chat template for every turn. */
class ChatSession {
  private readonly history: ChatMessage[] = [];
  private showStats: boolean;
  private readonly lines: Interface;
  private readonly editorOutput = new EditorOutput(process.stdout);
  /** Cancels the answer being generated; undefined at the prompt. */
  private answering: AbortController | undefined;
  /** Set at the end of input (Ctrl-D on a terminal), which may come while an answer is being generated. */
  private inputEnded = false;
  private readonly out = process.stdout;
  private readonly dim = dimmer(process.stdout);

  constructor(
    private readonly engine: Engine,
    private readonly options: GenerateOptions,
    private readonly flags: ChatFlags,
  ) {
    this.showStats = flags.verbose ?? false;
    this.startConversation();
    this.lines = createInterface({ input: process.stdin, output: this.editorOutput, terminal: process.stdin.isTTY === true, prompt: '>>> ' });
    this.lines.on('close', () => (this.inputEnded = true));
    // On a terminal Ctrl-C arrives as a key, not a signal: it cancels the answer, or clears the line.
    this.lines.on('SIGINT', () => {
      if (this.answering) this.answering.abort();
      else {
        this.out.write(`\n${this.dim('(/exit or Ctrl-D to leave)')}\n`);
        this.lines.write(null, { ctrl: true, name: 'u' });
        this.lines.prompt();
      }
    });
  }

  private startConversation(): void {
    this.history.length = 0;
    if (this.flags.system) this.history.push({ role: 'system', content: this.flags.system });
  }

  async run(): Promise<void> {
    this.out.write(this.dim('Type a message; /help for commands, /exit to leave.\n'));
    this.lines.prompt();
    for await (const line of this.lines) {
      const input = line.trim();
      if (input === '/exit' || input === '/bye') break;
      if (input.startsWith('/')) this.command(input);
      else if (input) await this.answer(input);
      // Ctrl-D during the answer leaves once it is done, as a shell does; prompting again would
      // resume the terminal's input, and the session would wait at a prompt that reads nothing.
      // Piped input has ended for good: the lines it held before its end are still answered.
      if (this.inputEnded && this.lines.terminal) break;
      this.lines.prompt();
    }
    this.lines.close();
  }

  private command(input: string): void {
    if (input === '/stats') {
      this.showStats = !this.showStats;
      this.out.write(this.dim(`statistics ${this.showStats ? 'on' : 'off'}\n`));
    } else if (input === '/clear') {
      this.startConversation();
      this.out.write(this.dim('conversation cleared\n'));
    } else if (input === '/help' || input === '/?') {
      this.out.write(`${HELP}\n`);
    } else {
      this.out.write(`unknown command ${input}; /help lists the commands\n`);
    }
  }

  private async answer(message: string): Promise<void> {
    this.history.push({ role: 'user', content: message });
    this.answering = new AbortController();
    this.editorOutput.muted = true;
    const printer = new AnswerPrinter(this.out, this.dim);
    try {
      const iterator = this.engine.chat(this.history, { ...this.options, signal: this.answering.signal });
      let step = await iterator.next();
      while (!step.done) {
        printer.write(step.value);
        step = await iterator.next();
      }
      printer.end();
      this.remember(step.value);
    } catch (error) {
      // A turn that could not run (e.g. the conversation outgrew the context) leaves no trace.
      printer.end();
      this.history.pop();
      this.out.write(`tachyon: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}\n`);
    } finally {
      this.answering = undefined;
      this.editorOutput.muted = false;
    }
  }

  /** The answer joins the history without its thinking, as chat templates of reasoning models expect. */
  private remember(result: GenerationResult): void {
    const { stopReason } = result.stats;
    if (stopReason === 'abort') this.out.write(this.dim('(stopped)\n'));
    if (stopReason === 'context') this.out.write(this.dim('(the context is full: /clear starts a new conversation)\n'));
    const answer = result.content.trim();
    if (answer) this.history.push({ role: 'assistant', content: answer });
    // No answer (stopped or out of room while thinking): the question is withdrawn with it.
    else this.history.pop();
    if (this.showStats) process.stderr.write(`${this.dim(formatStats(result.stats))}\n`);
  }
}

/** Streams thinking (dimmed) and answer text, each trimmed, a blank line between them. */
class AnswerPrinter {
  private readonly trimmed = new TrimmedSplitText();
  private part: 'none' | 'reasoning' | 'content' = 'none';

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly dim: (text: string) => string,
  ) {}

  write(chunk: GenerationChunk): void {
    const { reasoning, content } = this.trimmed.push(chunk);
    if (reasoning) this.print('reasoning', reasoning);
    if (content) this.print('content', content);
  }

  private print(part: 'reasoning' | 'content', text: string): void {
    if (part !== this.part && this.part !== 'none') this.out.write('\n\n');
    this.part = part;
    this.out.write(part === 'reasoning' ? this.dim(text) : text);
  }

  end(): void {
    if (this.part !== 'none') this.out.write('\n');
  }
}
