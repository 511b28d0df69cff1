// The web inbox in a real browser (Debian's Chromium through playwright-core):
// its Content-Security-Policy lets its own script run and nothing else, the
// token given in the fragment leaves the address bar once read, and a
// pending requirement is approved with a click. With OTHER_TOKEN, first:
// an identity that may not decide the run's requirement sees it with no
// buttons, "not yours to decide". With ROW_TEXT in the environment, the
// run's row must show it (e.g. "1 of 2 approvals") before the click.
//
//   node inbox.mjs APPROVER_URL TOKEN RUN_ID SCREENSHOT.png [OTHER_TOKEN]
// Prints one "ok: ..." line per check; exits 1 at the first that fails.
import { fail, launch } from './browser.mjs';

const [url, token, runId, shot, other] = process.argv.slice(2);
const browser = await launch();
try {
  if (other) {
    const view = await browser.newPage();
    await view.goto(`${url}/#token=${other}`);
    const seen = view.locator('#pending tr', { hasText: runId });
    await seen.waitFor({ timeout: 15000 }).catch(() => fail('the other identity does not see the run'));
    if (await seen.getByRole('button').count() !== 0) fail('the other identity is offered buttons');
    if (!(await seen.textContent()).includes('not yours to decide')) fail('the row does not say why');
    console.log('ok: an identity that may not decide sees no buttons');
    await view.close();
  }
  const page = await browser.newPage();
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  await page.goto(`${url}/#token=${token}`);
  const row = page.locator('#pending tr', { hasText: runId });
  await row.waitFor({ timeout: 15000 }).catch(() => fail('the pending requirement is not listed: did the script run?'));
  console.log('ok: the inbox script ran under its policy and listed the run');
  if (page.url().includes('#') || page.url().includes(token)) fail(`the token is still in the address bar: ${page.url()}`);
  console.log('ok: the fragment left the address bar');
  if (violations.length) fail(`policy violations: ${violations.join('; ')}`);
  console.log('ok: no policy violation reported');
  const injected = await page.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.__injected = true';
    document.body.appendChild(s);
    return window.__injected === true;
  });
  if (injected) fail('an injected inline script ran');
  console.log('ok: an injected inline script does not run');
  if (process.env.ROW_TEXT) {
    const text = await row.textContent();
    if (!text.includes(process.env.ROW_TEXT)) fail(`the row does not show "${process.env.ROW_TEXT}": ${text}`);
    console.log(`ok: the row shows "${process.env.ROW_TEXT}"`);
  }
  await row.getByRole('button', { name: 'Approve' }).click();
  await row.waitFor({ state: 'detached', timeout: 15000 }).catch(() => fail('the approved requirement is still listed'));
  console.log('ok: approved with a click');
  await page.screenshot({ path: shot, fullPage: true });
} finally {
  await browser.close();
}
