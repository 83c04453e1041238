/**
 * Reading answers out of generated text: the final answer after the answer prefix ("The answer
 * is 132."), the result a thinking section last concluded ("So 47 + 85 = 132."), and scoring
 * against an expected answer.
 */

/** The phrase the testbed (and the probe) put before the final answer. */
export const DEFAULT_ANSWER_PREFIX = 'The answer is';

const NUMBER = String.raw`-?\d[\d,]*(?:\.\d+)?`;

/**
 * The answer after the last occurrence of `prefix` in `text`, as written up to the end of its
 * first number (undefined when there is none). "The answer is 1,320." gives "1320".
 */
export function parseFinalAnswer(text: string, prefix = DEFAULT_ANSWER_PREFIX): string | undefined {
  const at = text.lastIndexOf(prefix);
  if (at < 0) return undefined;
  const match = new RegExp(`^\\s*(${NUMBER})`).exec(text.slice(at + prefix.length));
  return match ? normalizeNumber(match[1]) : undefined;
}

/**
 * The last result the text concluded, i.e. what the thinking would answer if it stopped here:
 * the number after "gives", or after the last "=" of a line that starts with "So" (column sums
 * such as "Ones: 7 + 5 = 12." are steps, not conclusions). Undefined when nothing was concluded.
 */
export function lastConcludedResult(text: string): string | undefined {
  const conclusion = new RegExp(`(?:^So\\b.*=|\\bgives)\\s*(${NUMBER})`, 'gm');
  let last: string | undefined;
  for (const match of text.matchAll(conclusion)) last = match[1];
  return last === undefined ? undefined : normalizeNumber(last);
}

/** Whether a parsed answer equals the expected one (numbers compare by value: "132.0" = 132). */
export function answerMatches(parsed: string | undefined, expected: string | number): boolean {
  if (parsed === undefined) return false;
  const want = normalizeNumber(String(expected));
  return parsed === want || (isNumeric(parsed) && isNumeric(want) && Number(parsed) === Number(want));
}

export interface AnswerScore {
  correct: number;
  total: number;
  accuracy: number;
}

/** Scores final answers (the text after the thinking) against expected answers, pairwise. */
export function scoreAnswers(items: readonly { content: string; expected: string | number }[], prefix = DEFAULT_ANSWER_PREFIX): AnswerScore {
  const correct = items.filter((item) => answerMatches(parseFinalAnswer(item.content, prefix), item.expected)).length;
  return { correct, total: items.length, accuracy: items.length > 0 ? correct / items.length : 0 };
}

function normalizeNumber(text: string): string {
  return text.replace(/,/g, '').replace(/\.$/, '');
}

function isNumeric(text: string): boolean {
  return text.trim() !== '' && Number.isFinite(Number(text));
}
