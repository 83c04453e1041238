/** `tachyon bench …`: speed measurements against a baseline run in the same invocation. */
import type { Command } from 'commander';

export function registerBench(program: Command): void {
  program.command('bench').description('benchmarks (ratios against a baseline measured in the same run)');
}
