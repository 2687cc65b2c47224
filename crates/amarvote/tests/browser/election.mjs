// End-to-end: people run an election in headless Chromium against `amarvote serve`.
// An administrator creates it, guardians consent with their credential files, three
// voters cast on a phone, each in another language (ada in English, brian in Bengali with
// the keyboard alone, chloe in French after challenging a ballot), the administrator runs
// tally, decryption and combine with one guardian missing, and the results page shows
// the right counts. Two more guardians run a key ceremony with `amarvote guardian
// ceremony` while the administrator watches it complete. Then a referendum voter, in
// French, is accepted, told of a duplicate, and refused when ineligible.
//
// Every page and state is audited as it is reached (audit below): axe-core finds no
// serious or critical violation, every control is labelled, Tab moves forward through
// the page with a visible focus ring, and nothing scrolls sideways at 320 px.
//
// Run by tests/web_ui.rs with AMARVOTE_URL, AMARVOTE_ADMIN_TOKEN, AMARVOTE_BIN and ARTIFACTS set.
// Prints `ELECTION <id>` so the Rust test can check the published counts itself.

import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

const base = process.env.AMARVOTE_URL;
const adminToken = process.env.AMARVOTE_ADMIN_TOKEN;
const artifacts = process.env.ARTIFACTS;
assert.ok(base && adminToken && artifacts && process.env.AMARVOTE_BIN, 'AMARVOTE_URL, AMARVOTE_ADMIN_TOKEN, AMARVOTE_BIN and ARTIFACTS must be set');
mkdirSync(artifacts, { recursive: true });

const userDataDir = mkdtempSync(join(tmpdir(), 'amarvote-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  acceptDownloads: true,
  locale: 'en-US',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(30_000);
const pageErrors = [];
page.on('pageerror', (error) => pageErrors.push(error.message));

let shot = 0;
async function screenshot(name) {
  shot += 1;
  await page.screenshot({ path: join(artifacts, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true });
}

// axe-core, from npm at the locked version; evaluated through the DevTools protocol, which
// the pages' content policy (no inline scripts) does not block.
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const axeFindings = {};

/** axe-core on the page as it is now: no serious or critical violation. */
async function assertAxeClean(where) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => (await window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
  })).violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3) })));
  for (const v of violations) axeFindings[`${v.impact} ${v.id}`] = (axeFindings[`${v.impact} ${v.id}`] || 0) + 1;
  const grave = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(grave, [], `axe-core on ${where}`);
}

/** The page is no wider than the screen: nothing scrolls sideways, nothing sticks out. */
async function assertNoSidewaysScroll(where) {
  const overflow = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const sticking = [...document.querySelectorAll('main *, header *')]
      .filter((e) => e.offsetParent !== null && !e.closest('.table-scroll'))
      .filter((e) => e.getBoundingClientRect().right > width + 0.5)
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}.${e.className} (${Math.round(e.getBoundingClientRect().right)} px)`);
    return { scroll: document.documentElement.scrollWidth - width, sticking: sticking.slice(0, 5) };
  });
  assert.deepEqual(overflow, { scroll: 0, sticking: [] }, `sideways overflow on ${where} at ${page.viewportSize().width} px`);
}

/** Tab visits every control of the page in document order, one stop per radio group, each
 * with a visible focus ring: no stop is skipped, none is a trap. The next stop is worked out
 * from the page as it is at each press, since polled parts (a job finishing) may change. */
async function assertFocusOrder(where) {
  const positive = await page.$$eval('[tabindex]', (els) => els.filter((e) => e.tabIndex > 0).map((e) => e.outerHTML.slice(0, 80)));
  assert.deepEqual(positive, [], `positive tabindex on ${where}`);
  await page.evaluate(() => {
    window.tabStops = () => {
      const candidates = [...document.querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex]')]
        .filter((e) => e.tabIndex >= 0 && !e.disabled && e.offsetParent !== null && !e.closest('[hidden]'));
      const groups = new Set();
      return candidates.filter((e) => {
        if (e.type !== 'radio') return true;
        if (groups.has(e.name)) return false;
        groups.add(e.name);
        return true;
      }).map((e) => (e.type === 'radio'
        ? candidates.filter((r) => r.type === 'radio' && r.name === e.name).find((r) => r.checked) || e
        : e));
    };
    window.tabFrom = window.tabStops()[0];
    window.tabFrom.focus();
  });
  const total = await page.evaluate(() => window.tabStops().length);
  for (let k = 1; k < total + 5; k += 1) {
    await page.keyboard.press('Tab');
    // A date field keeps the focus while Tab walks its own parts (day, month, year, time).
    for (let part = 0; part < 6 && await page.evaluate(() => document.activeElement === window.tabFrom
      && window.tabFrom.type === 'datetime-local'); part += 1) await page.keyboard.press('Tab');
    const step = await page.evaluate(() => {
      const el = document.activeElement;
      const from = window.tabFrom;
      const name = (e) => e && `${e.tagName.toLowerCase()} ${e.name || e.id || e.textContent.trim().slice(0, 30)}`;
      const wanted = window.tabStops().find((e) => from.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING);
      window.tabFrom = el;
      if (!wanted) return { end: true };
      const style = getComputedStyle(el);
      const ring = style.outlineStyle === 'auto' || (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2);
      // A stop redrawn by polling mid-walk leaves nothing to compare against: skip that step.
      return { expected: !from.isConnected || el === wanted, ring, name: name(el), wanted: name(wanted),
        outline: `${style.outlineStyle} ${style.outlineWidth}` };
    });
    if (step.end) { await page.evaluate(() => document.getElementById('main').focus()); return; }
    assert.ok(step.expected, `Tab went to ${step.name} instead of ${step.wanted} (press ${k}) on ${where}`);
    assert.ok(step.ring, `no visible focus ring on ${step.name} (outline ${step.outline}) on ${where}`);
  }
  assert.fail(`Tab never left the page's last control on ${where}`);
}

/** Every check on the page as it is now, at this width and at 320 px, then its screenshot. */
async function audit(name) {
  await assertAxeClean(name);
  await assertLabelled(name);
  await assertNoSidewaysScroll(name);
  const size = page.viewportSize();
  if (size.width !== 320) {
    await page.setViewportSize({ width: 320, height: size.height });
    await assertNoSidewaysScroll(name);
    await page.setViewportSize(size);
  }
  await assertFocusOrder(name);
  await screenshot(name);
}

/** Chooses the pages' language with the switch in the header. */
async function useLanguage(code) {
  await page.locator('#language').selectOption(code);
  await page.waitForFunction((c) => document.documentElement.lang === c && !document.getElementById('main').hasAttribute('aria-busy'), code);
}

/** Every visible form control has a label a screen reader can announce. */
async function assertLabelled(where) {
  const unlabelled = await page.$$eval('input, select, textarea', (els) => els
    .filter((e) => e.type !== 'hidden' && e.offsetParent !== null)
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map((e) => e.name || e.id));
  assert.deepEqual(unlabelled, [], `unlabelled controls on ${where}`);
}

let visits = 0;
/** Loads a page afresh (the query makes even the same hash a new document). */
async function go(hash) {
  visits += 1;
  await page.goto(`${base}/?visit=${visits}${hash}`);
  await page.locator('main:not([aria-busy]) h1').first().waitFor();
}

/** The error line beside a field, found by the field's label. */
async function fieldError(label) {
  const input = page.getByLabel(label, { exact: true });
  const id = (await input.getAttribute('aria-describedby')).split(' ').pop();
  return page.locator(`#${id}`);
}

// ---------- administrator: sign in, a rejected form, then the election ----------

await go('#/admin');
// A token kept from before the server's token changed leads back to sign-in, not to refusals.
await page.evaluate(() => sessionStorage.setItem('amarvote.admin-token', 'a-stale-token'));
await go('#/admin/new');
await page.getByRole('heading', { name: 'Administrator sign-in' }).waitFor();
assert.equal(await page.evaluate(() => sessionStorage.getItem('amarvote.admin-token')), null);
await go('#/admin');
await audit('admin-sign-in');
await page.getByRole('button', { name: 'Sign in' }).click();
await (await fieldError('Administrator token')).getByText('Enter the administrator token').waitFor();
await page.getByLabel('Administrator token').fill('not-the-token');
await page.getByRole('button', { name: 'Sign in' }).click();
await (await fieldError('Administrator token')).getByText('This is not the administrator token').waitFor();
await audit('admin-wrong-token');
await page.getByLabel('Administrator token').fill(adminToken);
await page.getByRole('button', { name: 'Sign in' }).click();
await page.getByRole('link', { name: 'Create an election' }).waitFor();
await audit('admin-home');
await page.getByRole('link', { name: 'Create an election' }).click();
await page.getByLabel('Title', { exact: true }).first().waitFor();

await page.locator('input[name=title]').fill('Town election 2026');
const contest = (i) => page.locator('fieldset.contest').nth(i);
async function fillContest(i, title, kind, candidates, allowed) {
  await contest(i).getByLabel('Title').fill(title);
  await contest(i).getByLabel('Kind').selectOption(kind);
  if (kind === 'candidates') {
    await contest(i).getByLabel('Candidates (one per line)').fill(candidates.join('\n'));
    await contest(i).getByLabel('Votes allowed (n of m)').fill(String(allowed));
  }
}
await fillContest(0, 'Mayor', 'candidates', ['Alice', 'Bob', 'Carol'], 1);
await page.getByRole('button', { name: 'Add a contest' }).click();
await fillContest(1, 'Council', 'candidates', ['Dan', 'Eve', 'Fay'], 2);
await page.getByRole('button', { name: 'Add a contest' }).click();
await fillContest(2, 'Build the bridge?', 'referendum');
// The key-ceremony hint says what the chosen way means.
const ceremonyHint = page.locator('[data-field=key_ceremony] .hint');
assert.match(await ceremonyHint.textContent(), /no guardian secret reaches the server/);
await page.getByLabel('Key ceremony').selectOption('server');
assert.match(await ceremonyHint.textContent(), /you trust this server with the secrets/);
await page.getByLabel('Number of guardians').fill('3');
await page.getByLabel('Quorum').fill('4');
await page.getByLabel('Voters (one name or id per line)').fill('ada\nbrian\nchloe\ndara');
await page.getByRole('button', { name: /Create the election/ }).click();
await (await fieldError('Quorum')).getByText('quorum').waitFor();
await audit('admin-create-error-beside-field');
await page.getByLabel('Quorum').fill('2');
await page.getByRole('button', { name: /Create the election/ }).click();
await page.getByRole('heading', { name: 'Election created' }).waitFor({ timeout: 120_000 });
const createdLines = (await page.locator('main').innerText()).split('\n').map((l) => l.trim());
assert.ok(!createdLines.includes('null') && !createdLines.includes('undefined'), `a stray line on "Election created": ${createdLines}`);
await audit('admin-election-created');

const electionId = (await page.locator('#election-id').textContent()).trim();
console.log(`ELECTION ${electionId}`);
const passphrases = await page.locator('code.passphrase').allTextContents();
assert.equal(passphrases.length, 3);
const credentialFiles = [];
for (const n of [1, 2]) {
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: `Download guardian-${n}.json` }).click(),
  ]);
  const path = join(userDataDir, `guardian-${n}.json`);
  await download.saveAs(path);
  credentialFiles.push(path);
}
const voterCredentials = Object.fromEntries(await page.locator('table.credentials tbody tr').evaluateAll(
  (rows) => rows.map((r) => [r.cells[0].textContent, r.cells[1].textContent])));
assert.deepEqual(Object.keys(voterCredentials), ['ada', 'brian', 'chloe', 'dara']);

await page.getByRole('link', { name: 'Manage this election' }).click();
await page.getByRole('heading', { name: 'Key ceremony' }).waitFor();
assert.equal(await page.locator('table.guardian-keys td.ok', { hasText: 'verified' }).count(), 3, 'every guardian\'s proofs verify');
// The decryption quorum belongs to decryption, not to the key ceremony.
const quorumSection = await page.locator('#quorum').evaluate((el) => {
  const headings = [...document.querySelectorAll('main h2')].filter((h) => h.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING);
  return headings.at(-1)?.textContent;
});
assert.equal(quorumSection, 'Tally and decryption');
/** Which Start buttons can be pressed now. */
const startable = async () => Object.fromEntries(await Promise.all(['tally', 'decrypt', 'combine', 'verify'].map(
  async (kind) => [kind, await page.getByRole('button', { name: `Start ${kind}` }).isEnabled()])));
assert.deepEqual(await startable(), { tally: false, decrypt: false, combine: false, verify: true }, 'only verify while voting is open');
assert.match(await page.locator('#phase-why-tally').textContent(), /Close voting first/);
await audit('admin-key-ceremony');

// ---------- guardians 1 and 2 consent in the browser; guardian 3 stays away ----------

for (const [k, file] of credentialFiles.entries()) {
  await go('#/guardian');
  if (k === 0) await audit('guardian-sign-in');
  await page.getByLabel('Credential file').setInputFiles(file);
  await page.locator('#guardian-status h2').waitFor();
  if (k === 0) {
    await page.getByLabel('Passphrase').fill('wrong passphrase');
    await page.getByRole('button', { name: 'Consent to decrypt' }).click();
    await (await fieldError('Passphrase')).waitFor({ state: 'visible' });
    await audit('guardian-wrong-passphrase');
    // After a wrong passphrase the server makes the guardian wait a second before the next try.
    await page.waitForTimeout(1200);
  }
  await page.getByLabel('Passphrase').fill(passphrases[k]);
  await page.getByRole('button', { name: 'Consent to decrypt' }).click();
  await page.getByText('Your consent is recorded').waitFor();
  await page.getByText(`${k + 1} of 3 guardians present`).waitFor();
  assert.ok(await page.getByLabel('Passphrase').isHidden(), 'no passphrase field after consenting');
  assert.ok(await page.getByRole('button', { name: 'Consent to decrypt' }).isHidden(), 'no Consent button after consenting');
  await audit(`guardian-${k + 1}-consented`);
}
await page.getByText('quorum 2: met').waitFor();

// ---------- voters, on a phone-sized screen, in three languages ----------

await page.setViewportSize({ width: 390, height: 844 });
/** The voter pages' words in the language being tested. */
const WORDS = {
  en: { credential: 'Your one-time voting credential', signIn: 'Sign in', review: 'Review my ballot', encrypt: 'Encrypt my ballot', cast: 'Cast my ballot', challenge: /Challenge/, again: 'Start again' },
  fr: { credential: 'Votre identifiant de vote à usage unique', signIn: 'Se connecter', review: 'Relire mon bulletin', encrypt: 'Chiffrer mon bulletin', cast: 'Déposer mon bulletin', challenge: /Vérifier le chiffrement/, again: 'Recommencer' },
  bn: { credential: 'আপনার এককালীন ভোটার পরিচয়-কোড', signIn: 'সাইন ইন', review: 'আমার ব্যালট পর্যালোচনা করুন', encrypt: 'আমার ব্যালট এনক্রিপ্ট করুন', cast: 'আমার ব্যালট জমা দিন' },
};
let words = WORDS.en;
async function signInVoter(name) {
  await go(`#/vote/${electionId}`);
  await page.getByLabel(words.credential).fill(voterCredentials[name]);
  await page.getByRole('button', { name: words.signIn }).click();
  await page.getByRole('button', { name: words.review }).waitFor();
}
async function mark(choices) {
  for (const name of choices) await page.getByLabel(name, { exact: true }).check();
  await page.getByRole('button', { name: words.review }).click();
  await page.getByRole('button', { name: words.encrypt }).click();
}
/** The election's sign-in page, in the language `code`, whose words the next steps use. */
async function openBallotPage(code) {
  await go(`#/vote/${electionId}`);
  await useLanguage(code);
  words = WORDS[code];
}
/** From the marked ballot through review to the cast-or-challenge page, auditing each. */
async function reviewAndEncrypt(code) {
  await audit(`voter-ballot-${code}`);
  await page.getByRole('button', { name: words.review }).click();
  await page.getByRole('button', { name: words.encrypt }).waitFor();
  await audit(`voter-review-${code}`);
  await page.getByRole('button', { name: words.encrypt }).click();
  await page.getByRole('button', { name: words.cast }).waitFor();
  await audit(`voter-cast-or-challenge-${code}`);
}
/** The tracking code on the receipt, without the spaces between its groups. */
async function receiptCode() {
  const code = (await page.locator('#tracking-code').textContent()).replace(/\s+/g, '');
  assert.match(code, /^[0-9A-F]{64}$/, 'a tracking code');
  return code;
}

await go(`#/vote/${electionId}`);
await audit('voter-sign-in-en');
await page.getByLabel(words.credential).fill('not-a-credential');
await page.getByRole('button', { name: words.signIn }).click();
await (await fieldError(words.credential)).getByText('eligibility list').waitFor();
await audit('voter-unknown-credential-en');

// ada, in English: n-of-m, a one-choice contest cleared and marked again, then the receipt.
await signInVoter('ada');
await page.getByLabel('Dan', { exact: true }).check();
await page.getByLabel('Eve', { exact: true }).check();
assert.equal(await page.getByLabel('Fay', { exact: true }).isDisabled(), true, 'a third council vote is refused');
await page.getByLabel('Alice', { exact: true }).check();
await page.locator('fieldset[data-field=contest-1]').getByLabel('Leave blank').check();
assert.equal(await page.getByLabel('Alice', { exact: true }).isChecked(), false, 'a one-choice contest can be left blank again');
await page.getByLabel('Alice', { exact: true }).check();
await page.getByLabel('Yes', { exact: true }).check();
// Switching language mid-ballot keeps the marks, and the focus stays on the switch.
await useLanguage('fr');
await page.getByRole('button', { name: WORDS.fr.review }).waitFor();
assert.deepEqual(await page.locator('form.ballot input:checked').evaluateAll((els) => els.map((e) => e.id)),
  ['contest-1-selection-1', 'contest-2-selection-1', 'contest-2-selection-2', 'contest-3-selection-1'], 'marks survive a change of language');
assert.equal(await page.evaluate(() => document.activeElement.id), 'language');
await useLanguage('en');
await reviewAndEncrypt('en');
await page.getByRole('button', { name: words.cast }).click();
const adaCode = await receiptCode();
await useLanguage('bn');
assert.equal(await receiptCode(), adaCode, 'the receipt survives a change of language');
await useLanguage('en');
for (const width of [320, 390]) {
  await page.setViewportSize({ width, height: 844 });
  await assertNoSidewaysScroll(`the receipt at ${width} px`);
}
await page.getByRole('button', { name: 'Copy the code' }).click();
await page.locator('#copy-status', { hasText: 'copied' }).waitFor();
assert.equal(await page.evaluate(() => navigator.clipboard.readText()), adaCode, 'the copy button copies the whole code');
const [receiptFile] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download the receipt' }).click()]);
const receiptPath = join(userDataDir, 'receipt.txt');
await receiptFile.saveAs(receiptPath);
const receiptBody = readFileSync(receiptPath, 'utf8');
assert.ok(receiptBody.includes(adaCode.match(/.{4}/g).join(' ')) && receiptBody.includes('Town election 2026'), receiptBody);
await page.emulateMedia({ media: 'print' });
assert.ok(await page.getByRole('button', { name: 'Print the receipt' }).isHidden(), 'the printed receipt has no buttons');
assert.ok(await page.getByText(`Election: Town election 2026`).isVisible(), 'the printed receipt names the election');
await screenshot('voter-receipt-printed-en');
await page.emulateMedia({ media: 'screen' });
await audit('voter-receipt-en');

// brian, in Bengali, with the keyboard alone: Tab to each control, arrows and Space to mark, Enter to go on.
await openBallotPage('bn');
await page.getByRole('button', { name: words.signIn }).waitFor();
await audit('voter-sign-in-bn');
/** Presses Tab until the focus is on what `selector` finds. */
async function tabTo(selector) {
  const target = page.locator(selector).first();
  for (let k = 0; k < 40; k += 1) {
    if (await target.evaluate((el) => el === document.activeElement)) return;
    await page.keyboard.press('Tab');
  }
  assert.fail(`Tab never reached ${selector}`);
}
const idOf = async (label) => page.getByLabel(label, { exact: true }).getAttribute('id');
await tabTo('input[name=credential]');
await page.keyboard.type(voterCredentials.brian);
await page.keyboard.press('Enter');
await page.getByRole('button', { name: words.review }).waitFor();
// Radio groups: Tab enters at the checked one ("leave blank"), arrows move the mark.
async function arrowTo(contestId, choice) {
  await tabTo(`input[name=${contestId}]:checked`);
  const wanted = page.locator(`#${await idOf(choice)}`);
  for (let k = 0; k < 5 && !(await wanted.isChecked()); k += 1) await page.keyboard.press('ArrowDown');
  assert.ok(await wanted.isChecked(), `the arrows reach ${choice}`);
}
await arrowTo('contest-1', 'Bob');
for (const choice of ['Eve', 'Fay']) {
  await tabTo(`#${await idOf(choice)}`);
  await page.keyboard.press('Space');
}
await arrowTo('contest-3', 'No');
await audit('voter-ballot-bn');
await tabTo('form.ballot button[type=submit]');
await page.keyboard.press('Enter');
await page.getByRole('button', { name: words.encrypt }).waitFor();
assert.deepEqual(await page.locator('dl.choices dd').allTextContents(), ['Bob', 'Eve, Fay', 'No']);
await audit('voter-review-bn');
await tabTo(`button[type=submit]`);
await page.keyboard.press('Enter');
await page.getByRole('button', { name: words.cast }).waitFor();
await audit('voter-cast-or-challenge-bn');
await tabTo('button[value=cast]');
await page.keyboard.press('Enter');
await receiptCode();
await audit('voter-receipt-bn');

// chloe, in French, challenges one ballot, sees it opened to her marks, starts again and casts.
await openBallotPage('fr');
await audit('voter-sign-in-fr');
await signInVoter('chloe');
for (const name of ['Carol', 'Dan', 'Yes']) await page.getByLabel(name, { exact: true }).check();
await reviewAndEncrypt('fr');
await page.getByRole('button', { name: words.challenge }).click();
await page.locator('#challenge-verdict.ok', { hasText: 'exactement les choix' }).waitFor();
const revealed = await page.locator('dl.choices dd').allTextContents();
assert.deepEqual(revealed, ['Carol', 'Dan', 'Yes']);
await audit('voter-challenge-revealed-fr');
await page.getByRole('button', { name: words.again }).click();
// Her marks are kept (Carol, Dan, Yes): she switches the mayor to Alice and adds Fay.
await mark(['Alice', 'Fay']);
await page.getByRole('button', { name: words.cast }).click();
await page.getByRole('heading', { name: 'Votre bulletin est déposé' }).waitFor();
await receiptCode();
await audit('voter-receipt-fr');

// dara leaves the mayor blank; while her page waits on "Cast", her credential casts the same
// choices from another device: the page then says plainly that the credential has voted.
await openBallotPage('en');
await signInVoter('dara');
await page.getByLabel('Dan', { exact: true }).check();
await page.getByLabel('No', { exact: true }).check();
const choices = { 'contest-2': [await idOf('Dan')], 'contest-3': [await idOf('No')] };
await page.getByRole('button', { name: words.review }).click();
assert.deepEqual(await page.locator('dl.choices dd').allTextContents(), ['no selection', 'Dan', 'No']);
await page.getByRole('button', { name: words.encrypt }).click();
await page.getByRole('button', { name: words.cast }).waitFor();
async function otherDevice(path, body) {
  const answer = await fetch(`${base}/api/elections/${electionId}/${path}`, {
    method: 'POST', headers: { Authorization: `Bearer ${voterCredentials.dara}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const text = await answer.text();
  assert.ok(answer.ok, `${path}: ${answer.status} ${text}`);
  return JSON.parse(text);
}
const elsewhere = await otherDevice('ballots/encrypt', { choices });
await otherDevice(`ballots/${elsewhere.ballot_id}/cast`, {});
await page.getByRole('button', { name: words.cast }).click();
await page.locator('#credential-used').waitFor();
await audit('voter-cast-elsewhere-en');

// A used credential is refused at sign-in, in plain words, with nothing left to press.
await openBallotPage('en');
await page.getByLabel(words.credential).fill(voterCredentials.ada);
await page.getByRole('button', { name: words.signIn }).click();
await page.locator('#credential-used', { hasText: 'A ballot has already been cast with this credential' }).waitFor();
assert.equal(await page.locator('main button').count(), 0, 'no button to press with a used credential');
await audit('voter-used-credential-en');
await page.setViewportSize({ width: 1280, height: 900 });

// ---------- administrator: close, tally, decrypt with guardian 3 missing, combine, verify ----------

await go(`#/admin/election/${electionId}`);
await page.getByRole('button', { name: 'Close voting' }).click();
await page.locator('#election-state', { hasText: 'closed' }).waitFor();
assert.ok(await page.getByRole('button', { name: 'Close voting' }).isDisabled(), 'a closed election cannot be closed again');
assert.deepEqual(await startable(), { tally: true, decrypt: false, combine: false, verify: true }, 'closed: tally and verify');
assert.match(await page.locator('#phase-why-decrypt').textContent(), /Run the tally first/);
const after = { tally: { decrypt: true }, decrypt: { combine: true }, combine: {}, verify: {} };
for (const kind of ['tally', 'decrypt', 'combine', 'verify']) {
  await page.getByRole('button', { name: `Start ${kind}` }).click();
  await page.locator(`.job[data-state=done]`, { has: page.locator('strong', { hasText: new RegExp(`^${kind}$`) }) })
    .first().waitFor({ timeout: 180_000 });
  // The next phase's button is enabled by the page's own refresh once the state moves on.
  for (const next of Object.keys(after[kind])) await page.waitForFunction((k) => !document.querySelector(`button[value=${k}]`).disabled, next);
  await audit(`admin-job-${kind}-done`);
}
// The page's next refresh sees the published state and no running job.
await page.waitForFunction(() => document.querySelector('button[value=combine]').disabled
  && !document.querySelector('button[value=verify]').disabled);
assert.deepEqual(await startable(), { tally: false, decrypt: false, combine: false, verify: true }, 'published: only verify again');
const firstJob = page.locator('.job').first();
await firstJob.getByText('Chunks and timings').click();
await firstJob.locator('table td', { hasText: 'done' }).first().waitFor();
const [archive] = await Promise.all([
  page.waitForEvent('download'),
  page.getByRole('link', { name: 'Download the election record (.tar)' }).click(),
]);
const archivePath = join(artifacts, 'election-record.tar');
await archive.saveAs(archivePath);
console.log(`RECORD ${archivePath}`);
await page.getByRole('button', { name: 'List the election record files' }).click();
await page.locator('ul.record-files li').first().waitFor();
await audit('admin-jobs-and-record');

// ---------- results and audit ----------

await go(`#/results/${electionId}`);
await page.locator('#results').waitFor();
const votes = async (contestName, choice) => Number(await page.locator('section.card', { has: page.getByRole('heading', { name: contestName }) })
  .locator('tr', { has: page.getByRole('cell', { name: choice, exact: true }) }).locator('td.votes').getAttribute('data-votes'));
const expected = { Mayor: { Alice: 2, Bob: 1, Carol: 0 }, Council: { Dan: 3, Eve: 2, Fay: 2 }, 'Build the bridge?': { Yes: 2, No: 2 } };
async function assertCounts() {
  for (const [contestName, counts] of Object.entries(expected)) {
    for (const [choice, n] of Object.entries(counts)) assert.equal(await votes(contestName, choice), n, `${contestName} / ${choice}`);
  }
}
await assertCounts();
await page.locator('#verification .ok', { hasText: 'All 5 ballots verified' }).waitFor();
assert.equal(await page.locator('#codes tbody tr').count(), 5, 'four cast and one challenged tracking code');
// The code as a voter copies it from a receipt: grouped, in lower case.
await page.getByLabel('Tracking code', { exact: true }).fill(adaCode.toLowerCase().match(/.{4}/g).join(' '));
await page.getByRole('button', { name: 'Look it up' }).click();
await page.getByText('cast and counted').waitFor();
await audit('results-and-audit-en');
await page.getByLabel('Tracking code', { exact: true }).fill('NOSUCHCODE');
await page.getByRole('button', { name: 'Look it up' }).click();
await (await fieldError('Tracking code')).getByText('No ballot in this election has this tracking code').waitFor();
await useLanguage('fr');
await page.getByRole('heading', { name: 'Résultats : Town election 2026' }).waitFor();
await assertCounts();
await page.locator('#verification .ok', { hasText: 'Les 5 bulletins sont vérifiés' }).waitFor();
assert.match(await page.locator('main > p').first().textContent(), /4 bulletins déposés, 1 ouvert pour vérification/);
await audit('results-and-audit-fr');
await useLanguage('bn');
await page.getByRole('heading', { name: 'ফলাফল: Town election 2026' }).waitFor();
await assertCounts();
await audit('results-and-audit-bn');
await useLanguage('en');

// ---------- a guardian-run key ceremony, watched live by the administrator ----------

await go('#/admin/new');
await page.locator('input[name=title]').fill('Board election');
await fillContest(0, 'Chair', 'candidates', ['Gus', 'Hal'], 1);
await page.getByLabel('Key ceremony').selectOption('guardians');
await page.getByLabel('Number of guardians').fill('2');
await page.getByLabel('Quorum').fill('2');
await audit('admin-new-election');
await page.getByRole('button', { name: /Create the election/ }).click();
await page.getByRole('heading', { name: 'Election created' }).waitFor();
assert.equal(await page.locator('code.passphrase').count(), 0, 'guardians choose their own passphrases');
const boardFiles = [];
for (const n of [1, 2]) {
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: `Download guardian-${n}.json` }).click(),
  ]);
  boardFiles.push(join(userDataDir, `board-guardian-${n}.json`));
  await download.saveAs(boardFiles[n - 1]);
}
await page.getByRole('link', { name: 'Manage this election' }).click();
await page.locator('#ceremony tr[data-guardian="guardian-1"] td.hint', { hasText: 'waiting' }).first().waitFor();
await audit('admin-guardian-ceremony-waiting');
const ceremonies = boardFiles.map((file, k) => new Promise((resolve, reject) => {
  const run = spawn(process.env.AMARVOTE_BIN, ['guardian', 'ceremony', '--credential', file, '--keystore', `${file}.keystore`, '--wait', '120'],
    { env: { ...process.env, AMARVOTE_PASSPHRASE: `board passphrase ${k}` }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  run.stdout.on('data', (d) => { output += d; });
  run.stderr.on('data', (d) => { output += d; });
  run.on('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`guardian ceremony exited ${code}: ${output}`))));
}));
await Promise.all(ceremonies);
await page.locator('#election-state', { hasText: 'open' }).waitFor();
assert.equal(await page.locator('td.ok', { hasText: 'verified' }).count(), 2, 'both announced keys\' proofs verify');
await audit('admin-guardian-ceremony-complete');

// ---------- referendum: law and voters by the administrator; a French voter's outcomes ----------

await go('#/admin');
await page.getByLabel('Law id').fill('loi-ui');
await page.getByLabel('Title', { exact: true }).fill('Loi sur les ponts');
await page.getByRole('button', { name: 'Create the law' }).click();
await page.getByText('Law loi-ui is open for votes').waitFor();
await page.getByLabel('Eligible voters: NAS,code,law_id per line').fill('123456789,ABCD2345,loi-ui\n987654321,XYZ78945,loi-ui');
await page.getByRole('button', { name: 'Load voters' }).click();
await page.getByText('Loaded 2 new voters').waitFor();
await audit('admin-referendum-loaded');

await go('#/referendum');
await useLanguage('fr');
await audit('referendum-fr');
async function referendumVote(nas, code, vote) {
  await go('#/referendum');
  await page.getByLabel('NAS (9 chiffres)').fill(nas);
  await page.getByLabel('Code de votre lettre').fill(code);
  await page.getByLabel('Loi', { exact: true }).selectOption('loi-ui');
  await page.getByLabel(vote === 'oui' ? 'Oui' : 'Non', { exact: true }).check();
  await page.getByRole('button', { name: 'Envoyer mon vote' }).click();
}
await referendumVote('12345', 'ABCD2345', 'oui');
await (await fieldError('NAS (9 chiffres)')).getByText('Un NAS compte 9 chiffres').waitFor();
await audit('referendum-field-error-fr');
await referendumVote('123456789', 'ABCD2345', 'oui');
await page.locator('#outcome [data-status=accepted]', { hasText: 'Accepté' }).waitFor();
await audit('referendum-accepted-fr');
await referendumVote('123456789', 'ABCD2345', 'non');
await page.locator('#outcome [data-status=duplicate]', { hasText: '1 tentative répétée après votre vote' }).waitFor();
await audit('referendum-duplicate-fr');
await referendumVote('987654321', 'WRNG2345', 'non');
await page.locator('#outcome [data-status=not_eligible]', { hasText: 'Non admissible' }).waitFor();
await audit('referendum-not-eligible-fr');
await go('#/referendum');
await page.locator('#law-totals tr[data-law="loi-ui"] td.oui[data-votes="1"]').waitFor();
assert.equal(await page.locator('#law-totals tr[data-law="loi-ui"] td.non').getAttribute('data-votes'), '0');
await audit('referendum-live-totals-fr');

// ---------- every public page in every language; the browser's language as the default ----------

for (const code of ['en', 'fr', 'bn']) {
  for (const [name, hash] of [['home', '#/'], ['vote-chooser', '#/vote'], ['results-chooser', '#/results'], ['referendum', '#/referendum'], ['not-found', '#/nowhere']]) {
    await go(hash);
    await useLanguage(code);
    await audit(`${name}-${code}`);
  }
}
// The choice is remembered across visits: the last one was Bengali.
await go('#/vote');
assert.equal(await page.evaluate(() => document.documentElement.lang), 'bn', 'the chosen language is remembered');
assert.equal(await page.locator('main h1').textContent(), 'ভোট দিন');

assert.deepEqual(pageErrors, [], 'no script errors in any page');
await context.close();
rmSync(userDataDir, { recursive: true, force: true });

// A browser that has never chosen speaks its own language: French for fr-CA, Bengali for bn-BD.
const fresh = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
for (const [locale, code, heading] of [['fr-CA', 'fr', 'Voter'], ['bn-BD', 'bn', 'ভোট দিন'], ['de-DE', 'en', 'Vote']]) {
  const stranger = await (await fresh.newContext({ locale })).newPage();
  await stranger.goto(`${base}/#/vote`);
  await stranger.locator('main h1', { hasText: heading }).waitFor();
  assert.equal(await stranger.evaluate(() => document.documentElement.lang), code, `default language for ${locale}`);
}
await fresh.close();

const findings = Object.entries(axeFindings).map(([rule, pages]) => `${rule} (${pages} pages)`);
console.log(`AXE serious or critical: none; minor or moderate: ${findings.length ? findings.join(', ') : 'none'}`);
console.log(`OK ${shot} screenshots in ${artifacts}`);
