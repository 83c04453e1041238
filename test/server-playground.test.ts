/**
 * The playground at `/` in a real headless Chromium (Debian's package, driven by playwright-core):
 * send a message, see thinking apart from the answer, tokens coloured by drafter, live τ and
 * tokens/s, no console errors. Writes reports/playground.png for people to look at.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { writeFileAtomic } from '../src/atomic-file.js';
import { startServer, verifyEveryDraft, type RunningServer } from './helpers/server.js';
import { projectRoot } from './helpers/models.js';
import { skipWithout } from './helpers/system-tools.js';

const CHROMIUM = '/usr/bin/chromium';
const withoutChromium = skipWithout(CHROMIUM, 'chromium');
/** Flags known to work as root on a machine without network (see .ci/run). */
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let running: RunningServer;
let browser: Browser;

before(async () => {
  running = await startServer(verifyEveryDraft, { apiKey: 'sesame' });
  if (!withoutChromium) browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
});
after(async () => {
  await browser?.close();
  await running.close();
});

test('the playground streams a reply with thinking apart, drafter-coloured tokens, τ and tokens/s', { skip: withoutChromium }, async () => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(error.message));

  // A returning user: the key typed last time is in localStorage.
  await page.addInitScript("localStorage.setItem('tachyon-api-key', 'sesame')");
  const response = await page.goto(running.url);
  assert.equal(response?.status(), 200);
  await page.locator('#model', { hasText: 'testbed' }).waitFor();
  await page.fill('#prompt', 'What is 47 + 85?');
  await page.click('#send');
  await page.waitForSelector('.assistant[data-state="done"]', { timeout: 60_000 });

  assert.deepEqual(await page.locator('.assistant .error').allTextContents(), []);
  assert.match((await page.locator('.thinking-text').textContent()) ?? '', /47 \+ 85/);
  const answer = await page.locator('.answer').innerText();
  assert.match(answer, /132/);
  assert.doesNotMatch(answer, /<\/?think>/);
  const drafters = await Promise.all((await page.locator('main .tok[data-drafter]').all()).map((span) => span.getAttribute('data-drafter')));
  assert.ok(drafters.length > 10, `coloured draft tokens: ${drafters.length}`);
  assert.ok(drafters.every((name) => name === 'ngram' || name === 'suffix'));
  const colour = await page.locator('main .tok[data-drafter]').first().evaluate('(span) => getComputedStyle(span).backgroundColor');
  assert.notEqual(colour, 'rgba(0, 0, 0, 0)', 'draft tokens are coloured');
  assert.ok(Number(await page.locator('#tau').innerText()) > 1, 'τ above 1 when drafts are accepted');
  assert.ok(Number(await page.locator('#tps').innerText()) > 0);
  assert.ok(Number(await page.locator('#tokens').innerText()) > 100);
  assert.deepEqual(problems, []);

  await writeFileAtomic(join(projectRoot, 'reports', 'playground.png'), await page.screenshot({ fullPage: true }), { shared: true });
});
