// End-to-end: people run an election in headless Chromium against `amarvote serve`.
// An administrator creates it, guardians consent with their credential files, three
// voters cast (one challenges first), the administrator runs tally, decryption and
// combine with one guardian missing, and the results page shows the right counts.
// Two more guardians run a key ceremony with `amarvote guardian ceremony` while the
// administrator watches it complete. Then a referendum voter is accepted, told of a duplicate, and refused when ineligible.
//
// Run by tests/web_ui.rs with AMARVOTE_URL, AMARVOTE_ADMIN_TOKEN, AMARVOTE_BIN and ARTIFACTS set.
// Prints `ELECTION <id>` so the Rust test can check the published counts itself.

import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
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
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(30_000);
const pageErrors = [];
page.on('pageerror', (error) => pageErrors.push(error.message));

let shot = 0;
async function screenshot(name) {
  shot += 1;
  await page.screenshot({ path: join(artifacts, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true });
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
  await page.locator('main h1').first().waitFor();
}

/** The error line beside a field, found by the field's label. */
async function fieldError(label) {
  const input = page.getByLabel(label, { exact: true });
  const id = (await input.getAttribute('aria-describedby')).split(' ').pop();
  return page.locator(`#${id}`);
}

// ---------- administrator: sign in, a rejected form, then the election ----------

await go('#/admin');
await screenshot('admin-sign-in');
await assertLabelled('admin sign-in');
await page.getByLabel('Administrator token').fill('not-the-token');
await page.getByRole('button', { name: 'Sign in' }).click();
await assert.doesNotReject((await fieldError('Administrator token')).getByText('administrator token').waitFor());
await page.getByLabel('Administrator token').fill(adminToken);
await page.getByRole('button', { name: 'Sign in' }).click();
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
await page.getByLabel('Key ceremony').selectOption('server');
await page.getByLabel('Number of guardians').fill('3');
await page.getByLabel('Quorum').fill('4');
await page.getByLabel('Voters (one name or id per line)').fill('ada\nbrian\nchloe');
await assertLabelled('election form');
await page.getByRole('button', { name: /Create the election/ }).click();
await (await fieldError('Quorum')).getByText('quorum').waitFor();
await screenshot('admin-create-error-beside-field');
await page.getByLabel('Quorum').fill('2');
await page.getByRole('button', { name: /Create the election/ }).click();
await page.getByRole('heading', { name: 'Election created' }).waitFor({ timeout: 120_000 });
await screenshot('admin-election-created');

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
assert.deepEqual(Object.keys(voterCredentials), ['ada', 'brian', 'chloe']);

await page.getByRole('link', { name: 'Manage this election' }).click();
await page.getByRole('heading', { name: 'Key ceremony' }).waitFor();
assert.equal(await page.locator('td.ok', { hasText: 'verified' }).count(), 3, 'every guardian\'s proofs verify');
await screenshot('admin-key-ceremony');

// ---------- guardians 1 and 2 consent in the browser; guardian 3 stays away ----------

for (const [k, file] of credentialFiles.entries()) {
  await go('#/guardian');
  await page.getByLabel('Credential file').setInputFiles(file);
  await page.locator('#guardian-status h2').waitFor();
  if (k === 0) {
    await page.getByLabel('Passphrase').fill('wrong passphrase');
    await page.getByRole('button', { name: 'Consent to decrypt' }).click();
    await (await fieldError('Passphrase')).waitFor({ state: 'visible' });
    await screenshot('guardian-wrong-passphrase');
    // After a wrong passphrase the server makes the guardian wait a second before the next try.
    await page.waitForTimeout(1200);
  }
  await page.getByLabel('Passphrase').fill(passphrases[k]);
  await page.getByRole('button', { name: 'Consent to decrypt' }).click();
  await page.getByText('Your consent is recorded').waitFor();
  await page.getByText(`${k + 1} of 3 guardians present`).waitFor();
  await screenshot(`guardian-${k + 1}-consented`);
}
await page.getByText('quorum 2: met').waitFor();

// ---------- voters, on a phone-sized screen ----------

await page.setViewportSize({ width: 390, height: 844 });
async function signInVoter(name) {
  await go(`#/vote/${electionId}`);
  await page.getByLabel('Your one-time voting credential').fill(voterCredentials[name]);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Review my ballot' }).waitFor();
}
async function mark(choices) {
  for (const name of choices) await page.getByLabel(name, { exact: true }).check();
  await page.getByRole('button', { name: 'Review my ballot' }).click();
  await page.getByRole('button', { name: 'Encrypt my ballot' }).click();
}
async function castBallot(name, choices) {
  await signInVoter(name);
  await mark(choices);
  await page.getByRole('button', { name: 'Cast my ballot' }).click();
  const code = (await page.locator('#tracking-code').textContent()).trim();
  assert.match(code, /^[0-9A-F]+$/, 'a tracking code');
  return code;
}

await go(`#/vote/${electionId}`);
await page.getByLabel('Your one-time voting credential').fill('not-a-credential');
await page.getByRole('button', { name: 'Sign in' }).click();
await (await fieldError('Your one-time voting credential')).getByText('eligibility list').waitFor();
await screenshot('voter-unknown-credential');

await signInVoter('ada');
// n-of-m: the third council box is disabled once two are checked.
await page.getByLabel('Dan', { exact: true }).check();
await page.getByLabel('Eve', { exact: true }).check();
assert.equal(await page.getByLabel('Fay', { exact: true }).isDisabled(), true, 'a third council vote is refused');
await page.getByLabel('Alice', { exact: true }).check();
await page.getByLabel('Yes', { exact: true }).check();
await assertLabelled('ballot');
await screenshot('voter-ballot-phone');
await page.getByRole('button', { name: 'Review my ballot' }).click();
await screenshot('voter-review');
await page.getByRole('button', { name: 'Encrypt my ballot' }).click();
await page.getByRole('button', { name: 'Cast my ballot' }).waitFor();
await screenshot('voter-cast-or-challenge');
await page.getByRole('button', { name: 'Cast my ballot' }).click();
const adaCode = (await page.locator('#tracking-code').textContent()).trim();
await screenshot('voter-receipt');

await castBallot('brian', ['Bob', 'Eve', 'Fay', 'No']);

// chloe challenges one ballot, sees it opened to her marks, starts again and casts.
await signInVoter('chloe');
await mark(['Carol', 'Dan', 'Yes']);
await page.getByRole('button', { name: /Challenge/ }).click();
await page.locator('#challenge-verdict.ok').waitFor();
const revealed = await page.locator('dl.choices dd').allTextContents();
assert.deepEqual(revealed, ['Carol', 'Dan', 'Yes']);
await screenshot('voter-challenge-revealed');
await page.getByRole('button', { name: 'Start again' }).click();
// Her marks are kept (Carol, Dan, Yes): she switches the mayor to Alice and adds Fay.
await mark(['Alice', 'Fay']);
await page.getByRole('button', { name: 'Cast my ballot' }).click();
await page.locator('#tracking-code').waitFor();

// A used credential cannot cast again: the server refuses to encrypt a second ballot for it.
await signInVoter('ada');
await mark(['Bob']);
await page.locator('.alert[role=alert]').filter({ hasText: /already been used/ }).waitFor();
await screenshot('voter-second-ballot-refused');
await page.setViewportSize({ width: 1280, height: 900 });

// ---------- administrator: close, tally, decrypt with guardian 3 missing, combine, verify ----------

await go(`#/admin/election/${electionId}`);
await page.getByRole('button', { name: 'Close voting' }).click();
await page.locator('#election-state', { hasText: 'closed' }).waitFor();
for (const kind of ['tally', 'decrypt', 'combine', 'verify']) {
  await page.getByRole('button', { name: `Start ${kind}` }).click();
  await page.locator(`.job[data-state=done]`, { has: page.locator('strong', { hasText: new RegExp(`^${kind}$`) }) })
    .first().waitFor({ timeout: 180_000 });
  await screenshot(`admin-job-${kind}-done`);
}
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
await screenshot('admin-jobs-and-record');

// ---------- results and audit ----------

await go(`#/results/${electionId}`);
await page.locator('#results').waitFor();
const votes = async (contestName, choice) => Number(await page.locator('section.card', { has: page.getByRole('heading', { name: contestName }) })
  .locator('tr', { has: page.getByRole('cell', { name: choice, exact: true }) }).locator('td.votes').textContent());
const expected = { Mayor: { Alice: 2, Bob: 1, Carol: 0 }, Council: { Dan: 2, Eve: 2, Fay: 2 }, 'Build the bridge?': { Yes: 2, No: 1 } };
for (const [contestName, counts] of Object.entries(expected)) {
  for (const [choice, n] of Object.entries(counts)) assert.equal(await votes(contestName, choice), n, `${contestName} / ${choice}`);
}
await page.locator('#verification .ok', { hasText: 'All 4 ballots verified' }).waitFor();
assert.equal(await page.locator('#codes tbody tr').count(), 4, 'three cast and one challenged tracking code');
await page.getByLabel('Tracking code').fill(adaCode.toLowerCase());
await page.getByRole('button', { name: 'Look it up' }).click();
await page.getByText('cast and counted').waitFor();
await screenshot('results-and-audit');
await page.getByLabel('Tracking code').fill('NOSUCHCODE');
await page.getByRole('button', { name: 'Look it up' }).click();
await (await fieldError('Tracking code')).waitFor({ state: 'visible' });

// ---------- a guardian-run key ceremony, watched live by the administrator ----------

await go('#/admin/new');
await page.locator('input[name=title]').fill('Board election');
await fillContest(0, 'Chair', 'candidates', ['Gus', 'Hal'], 1);
await page.getByLabel('Key ceremony').selectOption('guardians');
await page.getByLabel('Number of guardians').fill('2');
await page.getByLabel('Quorum').fill('2');
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
await screenshot('admin-guardian-ceremony-waiting');
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
await screenshot('admin-guardian-ceremony-complete');

// ---------- referendum: law and voters by the administrator; a voter's three outcomes ----------

await go('#/admin');
await page.getByLabel('Law id').fill('loi-ui');
await page.getByLabel('Title', { exact: true }).fill('Loi sur les ponts');
await page.getByRole('button', { name: 'Create the law' }).click();
await page.getByText('Law loi-ui is open for votes').waitFor();
await page.getByLabel('Eligible voters: NAS,code,law_id per line').fill('123456789,ABCD2345,loi-ui\n987654321,XYZ78945,loi-ui');
await page.getByRole('button', { name: 'Load voters' }).click();
await page.getByText('Loaded 2 new voters').waitFor();

async function referendumVote(nas, code, vote) {
  await go('#/referendum');
  await page.getByLabel('NAS (9 digits)').fill(nas);
  await page.getByLabel('Code from your letter').fill(code);
  await page.getByLabel('Law').selectOption('loi-ui');
  await page.getByLabel(vote === 'oui' ? 'Oui' : 'Non', { exact: true }).check();
  await page.getByRole('button', { name: 'Submit my vote' }).click();
}
await referendumVote('12345', 'ABCD2345', 'oui');
await (await fieldError('NAS (9 digits)')).waitFor({ state: 'visible' });
await screenshot('referendum-field-error');
await referendumVote('123456789', 'ABCD2345', 'oui');
await page.locator('#outcome [data-status=accepted]').waitFor();
await screenshot('referendum-accepted');
await referendumVote('123456789', 'ABCD2345', 'non');
await page.locator('#outcome [data-status=duplicate]', { hasText: '1 repeated attempt after your vote' }).waitFor();
await screenshot('referendum-duplicate');
await referendumVote('987654321', 'WRNG2345', 'non');
await page.locator('#outcome [data-status=not_eligible]').waitFor();
await go('#/referendum');
await page.locator('#law-totals tr[data-law="loi-ui"] td.oui', { hasText: /^1$/ }).waitFor();
assert.equal(await page.locator('#law-totals tr[data-law="loi-ui"] td.non').textContent(), '0');
await screenshot('referendum-live-totals');

assert.deepEqual(pageErrors, [], 'no script errors in any page');
await context.close();
rmSync(userDataDir, { recursive: true, force: true });
console.log(`OK ${shot} screenshots in ${artifacts}`);
