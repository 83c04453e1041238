/** Progress bars on stderr for long work (model load, model generation, benchmarks). */
import cliProgress from 'cli-progress';

export interface Progress {
  update(fraction: number): void;
  stop(): void;
}

/** A bar when stderr is a terminal; otherwise nothing (logs and pipes stay clean). */
export function progressBar(label: string, enabled = process.stderr.isTTY === true): Progress {
  if (!enabled) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}%`, stream: process.stderr, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(100, 0);
  return {
    update: (fraction) => bar.update(Math.round(Math.min(1, Math.max(0, fraction)) * 100)),
    stop: () => bar.stop(),
  };
}

/** Progress over a known number of items, as "label 3/10" lines when stderr is not a terminal. */
export function counter(label: string, total: number): { tick(detail?: string): void; stop(): void } {
  const bar = progressBar(label);
  let done = 0;
  const lines = process.stderr.isTTY !== true;
  return {
    tick(detail?: string) {
      done++;
      bar.update(done / total);
      if (lines) process.stderr.write(`${label} ${done}/${total}${detail ? ` ${detail}` : ''}\n`);
    },
    stop: () => bar.stop(),
  };
}
