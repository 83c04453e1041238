/** `tachyon cache stats|clear|verify`: look after the KV cache's disk folder and Redis tier. */
import type { Command } from 'commander';
import { openTiers, defaultCacheFolder } from '../kvcache/tiers/open.js';
import type { CacheTier, TierName } from '../kvcache/tiers/tier.js';
import { verifyTier, type VerifyReport } from '../kvcache/verify.js';
import { progressBar } from './progress.js';

interface CacheFlags {
  dir: string;
  redis?: string;
  json?: boolean;
}

/** The disk folder always; Redis when a URL is given. */
async function withTiers<T>(flags: CacheFlags, run: (tiers: CacheTier[]) => Promise<T>): Promise<T> {
  const names: TierName[] = flags.redis ? ['disk', 'redis'] : ['disk'];
  // No warning callback: a Redis named here and unreachable fails the command with its reason.
  const tiers = await openTiers({ tiers: names, dir: flags.dir, redisUrl: flags.redis });
  try {
    return await run(tiers);
  } finally {
    for (const tier of tiers) await tier.close();
  }
}

function addTierOptions(command: Command): Command {
  return command
    .option('--dir <folder>', 'disk tier folder', defaultCacheFolder())
    .option('--redis <url>', 'also the Redis tier at this URL (redis://[user:pass@]host:port[/db], rediss:// for TLS)')
    .option('--json', 'print JSON');
}

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('inspect, verify or clear the KV prefix cache (disk folder and Redis)');

  addTierOptions(cache.command('stats').description('entries and bytes held by each tier')).action(async (flags: CacheFlags) => {
    await withTiers(flags, async (tiers) => {
      const rows = [];
      for (const tier of tiers) rows.push({ tier: tier.name, ...(await tier.usage()) });
      if (flags.json) return void process.stdout.write(`${JSON.stringify({ dir: flags.dir, tiers: rows })}\n`);
      for (const row of rows) process.stdout.write(`${row.tier.padEnd(6)} ${String(row.entries).padStart(8)} entries ${formatBytes(row.bytes).padStart(10)}\n`);
    });
  });

  addTierOptions(cache.command('clear').description('remove every entry from each tier')).action(async (flags: CacheFlags) => {
    await withTiers(flags, async (tiers) => {
      const cleared = [];
      for (const tier of tiers) {
        const { entries } = await tier.usage();
        await tier.clear();
        cleared.push({ tier: tier.name, entries });
      }
      if (flags.json) return void process.stdout.write(`${JSON.stringify({ cleared })}\n`);
      for (const row of cleared) process.stdout.write(`${row.tier}: removed ${row.entries} entries\n`);
    });
  });

  addTierOptions(cache.command('verify').description('check every entry (checksum, format, key); exit 1 when one is bad'))
    .option('--remove-bad', 'delete the bad entries found')
    .action(async (flags: CacheFlags & { removeBad?: boolean }) => {
      const reports = await withTiers(flags, async (tiers) => {
        const results: (VerifyReport & { tier: TierName })[] = [];
        for (const tier of tiers) {
          const bar = progressBar(`verifying ${tier.name}`);
          results.push({ tier: tier.name, ...(await verifyTier(tier, { removeBad: flags.removeBad, onProgress: (done, total) => bar.update(done / Math.max(1, total)) })) });
          bar.stop();
        }
        return results;
      });
      if (flags.json) process.stdout.write(`${JSON.stringify({ tiers: reports })}\n`);
      else for (const report of reports) process.stdout.write(describeReport(report));
      if (reports.some((report) => badCount(report) > report.removed)) process.exitCode = 1;
    });
}

function describeReport(report: VerifyReport & { tier: TierName }): string {
  const bad = Object.entries(report.bad).map(([reason, count]) => `${count} ${reason}`);
  const removed = report.removed > 0 ? `, ${report.removed} removed` : '';
  return `${report.tier}: ${report.entries} entries, ${report.good} good${bad.length > 0 ? `, bad: ${bad.join(', ')}` : ''}${removed}\n`;
}

function badCount(report: VerifyReport): number {
  return Object.values(report.bad).reduce((sum, count) => sum + count, 0);
}

function formatBytes(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
