/**
 * TEMPORARY: the thinking/answer split of the agreed interface (`chunk.reasoning`,
 * `chunk.content`, `result.reasoning`, `result.content`, `stats.thinkingTokens`) until the
 * reasoning work (src/reasoning/segments.ts) lands on main and the engine's chunks carry it.
 * Delete this file then and read the fields from the engine directly.
 */
import type { EngineChunk } from '../engine.js';
import type { GenerationResult, GenerationStats } from '../generate/generate.js';

export interface SplitChunk extends EngineChunk {
  reasoning: string;
  content: string;
}

export interface SplitResult extends GenerationResult {
  reasoning: string;
  content: string;
  stats: GenerationStats & { thinkingTokens: number };
}

const OPEN = '<think>';
const CLOSE = '</think>';

/** Text before `</think>` is thinking when the output opened with `<think>`; tags are dropped. */
export async function* splitThinking(stream: AsyncGenerator<EngineChunk, GenerationResult, void>): AsyncGenerator<SplitChunk, SplitResult, void> {
  let state: 'start' | 'thinking' | 'answer' = 'start';
  let pending = '';
  let reasoningText = '';
  let contentText = '';
  let thinkingTokens = 0;
  try {
    for (;;) {
      const step = await stream.next();
      if (step.done) {
        const stats = { ...step.value.stats, thinkingTokens };
        return { ...step.value, reasoning: reasoningText, content: contentText + (state === 'start' ? pending : ''), stats };
      }
      if (state !== 'answer') thinkingTokens += step.value.tokens.length;
      pending += step.value.text;
      let reasoning = '';
      let content = '';
      if (state === 'start' && (pending.length >= OPEN.length || !OPEN.startsWith(pending))) {
        state = pending.startsWith(OPEN) ? 'thinking' : 'answer';
        if (state === 'thinking') pending = pending.slice(OPEN.length).replace(/^\n/, '');
      }
      if (state === 'thinking') {
        const end = pending.indexOf(CLOSE);
        if (end >= 0) {
          reasoning = pending.slice(0, end);
          pending = pending.slice(end + CLOSE.length).replace(/^\n/, '');
          state = 'answer';
        } else {
          reasoning = pending;
          pending = '';
        }
      }
      if (state === 'answer') {
        content = pending;
        pending = '';
      }
      reasoningText += reasoning;
      contentText += content;
      yield { ...step.value, reasoning, content };
    }
  } finally {
    await stream.return(undefined as never);
  }
}
