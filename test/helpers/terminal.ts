/** A command in a real pseudo-terminal (a detached tmux session on its own server), driven by keys. */
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/** Printed by the shell after the command ends, so its exit status can be read off the screen. */
const EXIT_MARK = '[exited ';

export class TerminalSession {
  private readonly socket = `tachyon-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

  /** Starts `argv` in a terminal of the given size. */
  constructor(argv: readonly string[], size = { columns: 160, rows: 50 }) {
    const command = `${argv.map(quote).join(' ')}; echo "${EXIT_MARK}$?]"; sleep 600`;
    this.tmux('new-session', '-d', '-x', String(size.columns), '-y', String(size.rows), command);
  }

  /** Types text (literally), then presses Enter. */
  type(text: string): void {
    this.tmux('send-keys', '-t', '0', '-l', text);
    this.tmux('send-keys', '-t', '0', 'Enter');
  }

  /** Presses keys by tmux's names (`C-c`, `C-d`). */
  press(...keys: string[]): void {
    this.tmux('send-keys', '-t', '0', ...keys);
  }

  /** Everything the terminal shows and has scrolled away; with `escapes`, the colour and style codes too. */
  screen(escapes = false): string {
    return this.tmux('capture-pane', '-p', '-J', '-S', '-', '-t', '0', ...(escapes ? ['-e'] : []));
  }

  /** Waits until the screen matches (a guard against hangs, not a timing assertion). */
  async waitFor(pattern: RegExp, timeoutMs = 120_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const screen = this.screen();
      if (pattern.test(screen)) return screen;
      if (Date.now() > deadline) throw new Error(`the terminal never showed ${pattern}; it shows:\n${screen}`);
      await sleep(100);
    }
  }

  /** The command's exit status, once it has ended. */
  async exitStatus(): Promise<number> {
    const screen = await this.waitFor(/\[exited \d+\]/);
    return Number(/\[exited (\d+)\]/.exec(screen)![1]);
  }

  close(): void {
    try {
      this.tmux('kill-server');
    } catch {
      // Already gone.
    }
  }

  private tmux(...args: string[]): string {
    return execFileSync('tmux', ['-L', this.socket, '-f', '/dev/null', ...args], { encoding: 'utf8' });
  }
}

function quote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
