// A notification's link opened in a real browser (Debian's Chromium through
// playwright-core): the inbox lists the requirement it names first, marked.
//
//   node inbox_link.mjs LINK TOKEN REQUIREMENT_ID
// Prints one "ok: ..." line per check; exits 1 at the first that fails.
import { fail, launch } from './browser.mjs';

const [link, token, id] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(`${link}#token=${token}`);
  const first = page.locator('#pending tr').first();
  await first.waitFor({ timeout: 15000 }).catch(() => fail('no pending requirement listed'));
  if ((await first.getAttribute('class')) !== 'linked') fail(`the first row is not ${id}'s`);
  console.log('ok: the linked requirement comes first, marked');
} finally {
  await browser.close();
}
