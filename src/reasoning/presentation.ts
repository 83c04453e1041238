/**
 * How thinking and answer text are shown to people and OpenAI clients: each part trimmed at both
 * ends, as llama-server presents a reasoning model's output. The newlines a model writes around
 * `<think>`, `</think>` and its turn markers are layout, not text. The engine's split stays raw
 * (a continuation needs the exact text); this is presentation only.
 *
 * A stream cannot know whether whitespace at the end of a part so far is trailing until more of
 * that part arrives, so it holds the whitespace back and drops it if none does. The streamed
 * pieces of each part therefore join to exactly the whole text trimmed.
 */
import type { SplitText } from './segments.js';

/** One part's trimming state. */
class TrimmedPart {
  private started = false;
  private heldSpace = '';

  /** The presentable part of the next piece of this part's text. */
  push(piece: string): string {
    const text = this.started ? piece : piece.trimStart();
    if (text.length === 0) return '';
    this.started = true;
    const body = text.trimEnd();
    if (body.length === 0) {
      this.heldSpace += text;
      return '';
    }
    const shown = this.heldSpace + body;
    this.heldSpace = text.slice(body.length);
    return shown;
  }
}

/** One response's presentation: feed it each chunk's split, in order. */
export class TrimmedSplitText {
  private readonly reasoning = new TrimmedPart();
  private readonly content = new TrimmedPart();

  /** The part of one chunk's split that can be shown now (each field may be empty). */
  push(split: SplitText): SplitText {
    return { reasoning: this.reasoning.push(split.reasoning), content: this.content.push(split.content) };
  }
}

/** A whole response's presentation: what its streamed pieces join up to. */
export function trimSplitText(split: SplitText): SplitText {
  return { reasoning: split.reasoning.trim(), content: split.content.trim() };
}
