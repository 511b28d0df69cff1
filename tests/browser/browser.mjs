// What the browser tests share: Debian's Chromium started through
// playwright-core, headless and quiet, and the way a check fails.
import { chromium } from 'playwright-core';

// Prints "failed: WHY" and exits 1.
export const fail = (why) => { console.log(`failed: ${why}`); process.exit(1); };

// A new browser; close() it.
export const launch = () => chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
