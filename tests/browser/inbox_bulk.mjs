// "Decide many" in the web inbox, in a real browser (Debian's Chromium
// through playwright-core): a filter by tool and argument is counted first
// (a dry run), the buttons say how many they decide, and "Approve all N"
// decides them and says so.
//
//   node inbox_bulk.mjs APPROVER_URL TOKEN TOOL ARGS_JSON COUNT SCREENSHOT.png
// Prints one "ok: ..." line per check; exits 1 at the first that fails.
import { fail, launch } from './browser.mjs';

const [url, token, tool, args, count, shot] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(`${url}/#token=${token}`);
  await page.fill('#bulk-tool', tool);
  await page.fill('#bulk-args', args);
  await page.click('#bulk-count');
  const msg = page.locator('#bulk-msg');
  await msg.filter({ hasText: 'match' }).waitFor({ timeout: 15000 })
    .catch(async () => fail(`no count shown: ${await page.locator('#msg').textContent()}`));
  const said = await msg.textContent();
  if (!said.startsWith(`${count} pending requirement(s) match`)) fail(`the count says "${said}"`);
  console.log(`ok: the count comes first: "${said}"`);
  const approve = page.locator('#bulk-approve');
  if (!(await approve.isVisible())) fail('no button to approve them');
  if ((await approve.textContent()) !== `Approve all ${count}`) fail(`the button says "${await approve.textContent()}"`);
  console.log(`ok: the button says "Approve all ${count}"`);
  await page.fill('#bulk-note', 'all at once');
  await approve.click();
  await msg.filter({ hasText: 'decided' }).waitFor({ timeout: 30000 })
    .catch(async () => fail(`no outcome shown: ${await page.locator('#msg').textContent()}`));
  const done = await msg.textContent();
  if (!done.startsWith(`${count} decided, 0 voted on, 0 refused`)) fail(`the outcome says "${done}"`);
  console.log(`ok: approved with a click: "${done}"`);
  await page.screenshot({ path: shot, fullPage: true });
} finally {
  await browser.close();
}
