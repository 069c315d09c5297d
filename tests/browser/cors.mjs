// Opens each page URL given in headless Chromium and prints what its fetch to querygate saw, as JSON.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const urls = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'qg-chromium-'));
// Flags as this machine needs them: no sandbox as root, no calls to the outside.
const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args, timeout: 20000,
});
const results = [];
try {
  for (const url of urls) {
    const page = await context.newPage();
    const console = [];
    page.on('console', (m) => console.push(m.text()));
    await page.goto(url, { timeout: 10000 });
    await page.waitForSelector('#out[data-done]', { timeout: 10000 });
    const seen = JSON.parse(await page.textContent('#out'));
    results.push({ url, seen, console });
    await page.close();
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(results) + '\n');
