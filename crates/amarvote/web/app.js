// AmarVote's web pages: one script, no build step. Every page calls the public HTTP API
// (see /api/openapi.json); nothing here holds a secret longer than the page needs it.

const main = document.getElementById('main');
const ADMIN_KEY = 'amarvote.admin-token';

// ---------- small DOM and API helpers ----------

/** Builds an element: props are attributes, `on…` functions are listeners. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

/** Calls the API; a non-2xx answer throws an ApiError with the server's message. */
async function api(method, path, { body, token } = {}) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'The server cannot be reached. Check your connection and try again.');
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, data && data.field);
  }
  return data;
}

const adminToken = () => sessionStorage.getItem(ADMIN_KEY);

/** A labelled input with its hint and its own error line. */
function field(label, input, { name, hint } = {}) {
  const id = input.id || `f-${(name || Math.random().toString(36).slice(2)).replace(/[^\w-]/g, '-')}`;
  input.id = id;
  const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint`, text: hint }) : null;
  input.setAttribute('aria-describedby', [hintEl && hintEl.id, error.id].filter(Boolean).join(' '));
  return h('div', { class: 'field', 'data-field': name || input.name || '' },
    h('label', { for: id, text: label }), hintEl, input, error);
}

/** The field an API message is about: its `field`, or the path before the first colon or space. */
function fieldOf(error) {
  if (error.field) return error.field;
  const match = /^([A-Za-z_][\w.\[\]]*)(?::| must| is| has)/.exec(error.message || '');
  return match ? match[1] : null;
}

/** Shows errors beside the fields they concern; unmatched ones above the form's buttons. */
function errorsOf(form) {
  const general = h('div', { class: 'alert', role: 'alert', hidden: true });
  form.append(general);
  const fields = () => [...form.querySelectorAll('[data-field]')];
  return {
    clear() {
      general.hidden = true;
      for (const f of fields()) {
        const err = f.querySelector(':scope > .field-error');
        if (err) { err.hidden = true; err.textContent = ''; }
        f.querySelectorAll('[aria-invalid]').forEach((i) => i.removeAttribute('aria-invalid'));
      }
    },
    show(error, fallbackField) {
      const name = fieldOf(error) || fallbackField;
      const target = fields().find((f) => name && f.dataset.field === name)
        || fields().find((f) => name && f.dataset.field && name.startsWith(f.dataset.field));
      if (target) {
        const err = target.querySelector(':scope > .field-error');
        err.textContent = error.message;
        err.hidden = false;
        const input = target.querySelector('input, select, textarea');
        if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
      } else {
        general.textContent = error.message;
        general.hidden = false;
        general.focus?.();
      }
    },
  };
}

/** Runs `work` for a form submit, with the button disabled meanwhile and errors shown. */
function onSubmit(form, work, fallbackField) {
  const errors = errorsOf(form);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    errors.clear();
    const buttons = [...form.querySelectorAll('button')];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await work(event.submitter);
    } catch (error) {
      if (!(error instanceof ApiError)) console.error(error);
      errors.show(error, fallbackField);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
  return errors;
}

function download(filename, text, type = 'application/json') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function page(title, ...children) {
  document.title = `${title} · AmarVote`;
  main.replaceChildren(h('h1', { text: title }), ...children);
  main.focus();
}

const notice = (text) => h('p', { class: 'notice', role: 'status', text });
const alertBox = (text) => h('p', { class: 'alert', role: 'alert', text });

/** Names of contests and selections, from the ElectionGuard manifest. */
function ballotLayout(manifest) {
  const candidateName = {};
  for (const c of manifest.candidates || []) {
    candidateName[c.object_id] = c.name?.text?.[0]?.value || c.object_id;
  }
  return (manifest.contests || [])
    .slice()
    .sort((a, b) => a.sequence_order - b.sequence_order)
    .map((c) => ({
      id: c.object_id,
      name: c.ballot_title?.text?.[0]?.value || c.name,
      votesAllowed: c.votes_allowed || c.number_elected || 1,
      selections: c.ballot_selections
        .slice()
        .sort((a, b) => a.sequence_order - b.sequence_order)
        .map((s) => ({ id: s.object_id, name: candidateName[s.candidate_id] || s.candidate_id })),
    }));
}

// ---------- routing ----------

let cleanups = [];
/** Timers and streams of the current page, stopped when the page changes. */
function keep(stop) { cleanups.push(stop); }
function every(ms, work) {
  const timer = setInterval(work, ms);
  keep(() => clearInterval(timer));
}

const routes = [
  [/^$|^\/$/, homePage],
  [/^\/admin$/, adminPage],
  [/^\/admin\/new$/, newElectionPage],
  [/^\/admin\/election\/([\w-]+)$/, electionAdminPage],
  [/^\/guardian$/, guardianPage],
  [/^\/vote$/, (m) => electionChooser('Vote', 'open', (id) => `#/vote/${id}`)],
  [/^\/vote\/([\w-]+)$/, votePage],
  [/^\/results$/, () => electionChooser('Results & audit', null, (id) => `#/results/${id}`)],
  [/^\/results\/([\w-]+)$/, resultsPage],
  [/^\/referendum$/, referendumPage],
  [/^\/referendum\/outcome\/([\w-]+)$/, referendumOutcomePage],
];

async function route() {
  cleanups.forEach((stop) => stop());
  cleanups = [];
  const path = location.hash.replace(/^#/, '');
  for (const [pattern, render] of routes) {
    const match = pattern.exec(path);
    if (match) {
      try {
        await render(...match.slice(1));
      } catch (error) {
        page('Something went wrong', alertBox(error.message));
      }
      return;
    }
  }
  page('Page not found', h('p', {}, 'There is no page here. ', h('a', { href: '#/', text: 'Go to the start page' }), '.'));
}

// ---------- start page and election lists ----------

async function homePage() {
  const { elections } = await api('GET', '/api/elections');
  page('AmarVote',
    h('p', { text: 'Verifiable elections (ElectionGuard 1.0): every ballot is encrypted, every count can be checked by anyone.' }),
    h('ul', {},
      h('li', {}, h('a', { href: '#/vote', text: 'Vote' }), ' with the one-time credential you were given.'),
      h('li', {}, h('a', { href: '#/results', text: 'Results & audit' }), ': counts, the verification report and every tracking code.'),
      h('li', {}, h('a', { href: '#/guardian', text: 'Guardians' }), ': consent to decryption with your credential file and passphrase.'),
      h('li', {}, h('a', { href: '#/admin', text: 'Administrators' }), ': create elections and run the tally.'),
      h('li', {}, h('a', { href: '#/referendum', text: 'Referendum' }), ': vote on a law with your NAS and code; live totals.')),
    h('h2', { text: 'Elections' }),
    electionTable(elections, (e) => [
      h('a', { href: `#/vote/${e.election_id}`, text: 'Vote' }), ' · ',
      h('a', { href: `#/results/${e.election_id}`, text: 'Results' })]));
}

function electionTable(elections, actions) {
  if (!elections.length) return h('p', { text: 'No elections yet.' });
  return h('div', { class: 'table-scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', { text: 'Title' }), h('th', { text: 'State' }), h('th', { text: 'Guardians' }), h('th', { text: '' }))),
    h('tbody', {}, elections.map((e) => h('tr', {},
      h('td', { text: e.title }), h('td', {}, h('span', { class: 'tag', text: e.state })),
      h('td', { text: `${e.quorum} of ${e.guardians}` }), h('td', {}, actions(e)))))));
}

async function electionChooser(title, state, link) {
  const { elections } = await api('GET', '/api/elections');
  const shown = state ? elections.filter((e) => e.state === state) : elections;
  page(title, shown.length
    ? h('ul', {}, shown.map((e) => h('li', {}, h('a', { href: link(e.election_id), text: e.title }), ` (${e.state})`)))
    : h('p', { text: state ? 'No election is open for voting.' : 'No elections yet.' }));
}

// ---------- administrator ----------

async function adminPage() {
  if (!adminToken()) return adminSignIn();
  const { elections } = await api('GET', '/api/elections');
  const signOut = h('button', { type: 'button', class: 'secondary', text: 'Sign out',
    onclick: () => { sessionStorage.removeItem(ADMIN_KEY); route(); } });
  page('Administrator',
    h('a', { class: 'button', href: '#/admin/new', text: 'Create an election' }), signOut,
    h('h2', { text: 'Elections' }),
    electionTable(elections, (e) => h('a', { href: `#/admin/election/${e.election_id}`, text: 'Manage' })),
    referendumAdmin());
}

function adminSignIn() {
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true });
  const form = h('form', { novalidate: true },
    field('Administrator token', token, { name: 'token', hint: 'The token in the server\'s data directory (admin.token).' }),
    h('button', { type: 'submit', text: 'Sign in' }));
  onSubmit(form, async () => {
    if (!token.value.trim()) throw new ApiError(400, 'Enter the administrator token.', 'token');
    await api('GET', '/api/admin', { token: token.value.trim() });
    sessionStorage.setItem(ADMIN_KEY, token.value.trim());
    route();
  }, 'token');
  page('Administrator sign-in', form);
}

function contestEditor(index) {
  const kind = h('select', { name: `contests[${index}].kind` },
    h('option', { value: 'candidates', text: 'Candidates' }), h('option', { value: 'referendum', text: 'Yes / No question' }));
  const candidates = h('textarea', { name: `contests[${index}].candidates`, rows: 4 });
  const allowed = h('input', { type: 'number', name: `contests[${index}].votes_allowed`, min: 1, value: 1 });
  const candidatesField = field('Candidates (one per line)', candidates, { name: `contests[${index}].candidates` });
  const allowedField = field('Votes allowed (n of m)', allowed, { name: `contests[${index}].votes_allowed` });
  kind.addEventListener('change', () => {
    const question = kind.value === 'referendum';
    candidatesField.hidden = question;
    allowedField.hidden = question;
  });
  const box = h('fieldset', { class: 'contest' },
    h('legend', { text: `Contest ${index + 1}` }),
    field('Title', h('input', { type: 'text', name: `contests[${index}].title` }), { name: `contests[${index}].title` }),
    field('Kind', kind, { name: `contests[${index}].kind` }),
    candidatesField, allowedField);
  box.read = () => {
    const question = kind.value === 'referendum';
    return {
      title: box.querySelector('input[type=text]').value.trim(),
      referendum: question,
      candidates: question ? [] : candidates.value.split('\n').map((s) => s.trim()).filter(Boolean),
      votes_allowed: question ? 1 : Number(allowed.value),
    };
  };
  return box;
}

function linesOf(text) {
  return text.split('\n').map((s) => s.trim()).filter(Boolean);
}

async function newElectionPage() {
  if (!adminToken()) return adminSignIn();
  const contests = h('div', {}, contestEditor(0));
  const voters = h('textarea', { name: 'voters', rows: 5 });
  const voterFile = h('input', { type: 'file', accept: '.csv,.txt', name: 'voter-file' });
  voterFile.addEventListener('change', async () => {
    const file = voterFile.files[0];
    if (file) voters.value = (await file.text()).split('\n').map((l) => l.split(',')[0].trim()).filter(Boolean).join('\n');
  });
  const form = h('form', { novalidate: true },
    field('Title', h('input', { type: 'text', name: 'title', required: true }), { name: 'title' }),
    contests,
    h('button', { type: 'button', class: 'secondary', text: 'Add a contest',
      onclick: () => contests.append(contestEditor(contests.children.length)) }),
    h('fieldset', {}, h('legend', { text: 'Guardians' }),
      field('Key ceremony', h('select', { name: 'key_ceremony' },
        h('option', { value: 'guardians', text: 'Run by the guardians on their own machines' }),
        h('option', { value: 'server', text: 'Generated on this server (convenience)' })),
      { name: 'key_ceremony', hint: 'Run by the guardians, no guardian secret ever reaches the server before the guardian consents to decrypt.' }),
      field('Number of guardians', h('input', { type: 'number', name: 'guardians', min: 1, value: 3 }), { name: 'guardians' }),
      field('Quorum', h('input', { type: 'number', name: 'quorum', min: 1, value: 2 }), { name: 'quorum', hint: 'How many guardians must be present to decrypt.' })),
    h('fieldset', {}, h('legend', { text: 'Voting window' }),
      field('Opens', h('input', { type: 'datetime-local', name: 'voting_start' }), { name: 'voting_start' }),
      field('Closes', h('input', { type: 'datetime-local', name: 'voting_end' }), { name: 'voting_end' })),
    h('fieldset', {}, h('legend', { text: 'Voter list' }),
      field('Voters (one name or id per line)', voters, { name: 'voters', hint: 'Each gets a one-time voting credential. The list itself is not stored.' }),
      field('…or upload a CSV (first column)', voterFile, { name: 'voter-file' })),
    h('button', { type: 'submit', text: 'Create the election and run the key ceremony' }));
  onSubmit(form, async () => {
    const value = (name) => form.querySelector(`[name="${name}"]`).value;
    const when = (name) => (value(name) ? new Date(value(name)).toISOString().replace(/\.\d{3}Z$/, 'Z') : undefined);
    const request = {
      title: value('title').trim(),
      contests: [...contests.children].map((c) => c.read()),
      guardians: Number(value('guardians')),
      quorum: Number(value('quorum')),
      voting_start: when('voting_start'),
      voting_end: when('voting_end'),
      key_ceremony: value('key_ceremony'),
    };
    const created = await api('POST', '/api/elections', { body: request, token: adminToken() });
    const list = linesOf(voters.value);
    const issued = list.length
      ? await api('POST', `/api/elections/${created.election_id}/voters`, { body: { voters: list }, token: adminToken() })
      : null;
    createdPage(created, issued);
  });
  page('Create an election', form);
}

function createdPage(created, issued) {
  const byGuardians = created.state === 'key_ceremony';
  const guardianRows = created.guardians.map((g) => h('tr', {},
    h('td', { text: g.guardian_id }),
    h('td', {}, byGuardians ? 'chosen by the guardian' : h('code', { class: 'passphrase', text: g.passphrase })),
    h('td', {}, h('button', { type: 'button', class: 'secondary', text: `Download ${g.guardian_id}.json`,
      onclick: () => download(`${g.guardian_id}.json`, JSON.stringify({
        amarvote_guardian_credential: 1, server: location.origin, election_id: created.election_id,
        guardian_id: g.guardian_id, token: g.token }, null, 2)) }))));
  const voterSection = issued ? [
    h('h2', { text: 'Voter credentials' }),
    h('p', { class: 'hint', text: 'Shown once. Send each voter their credential privately.' }),
    h('button', { type: 'button', class: 'secondary', text: 'Download credentials (CSV)',
      onclick: () => download('voter-credentials.csv', ['voter,credential', ...issued.voters.map((v) => `${v.voter},${v.credential}`)].join('\n'), 'text/csv') }),
    h('div', { class: 'table-scroll' }, h('table', { class: 'credentials' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Voter' }), h('th', { text: 'Credential' }))),
      h('tbody', {}, issued.voters.map((v) => h('tr', {}, h('td', { text: v.voter }), h('td', {}, h('code', { text: v.credential }))))))),
  ] : [];
  page('Election created',
    byGuardians
      ? notice('The guardians now run the key ceremony, each on their own machine; voting opens when every backup is verified.')
      : notice(`The key ceremony is complete: every guardian's proofs and backups were verified and the joint key is published.`),
    byGuardians ? ceremonyInstructions() : null,
    h('p', {}, 'Election id ', h('code', { id: 'election-id', text: created.election_id })),
    h('h2', { text: 'Guardian credentials' }),
    h('p', { class: 'hint', text: byGuardians ? 'Shown once. Give each guardian their credential file.' : 'Shown once. Give each guardian their credential file and, by another channel, their passphrase.' }),
    h('div', { class: 'table-scroll' }, h('table', { class: 'guardian-credentials' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Guardian' }), h('th', { text: 'Passphrase' }), h('th', { text: 'Credential file' }))),
      h('tbody', {}, guardianRows))),
    ...voterSection,
    h('a', { class: 'button', href: `#/admin/election/${created.election_id}`, text: 'Manage this election' }));
}

async function electionAdminPage(id) {
  if (!adminToken()) return adminSignIn();
  const overview = h('div');
  const ceremony = h('div');
  const jobsBox = h('div', { id: 'jobs' });
  const phases = h('div', { id: 'phases' });
  const refresh = async () => {
    const [summary, guardians, jobs] = await Promise.all([
      api('GET', `/api/elections/${id}`), api('GET', `/api/elections/${id}/guardians`), api('GET', `/api/elections/${id}/jobs`)]);
    overview.replaceChildren(summaryList(summary));
    ceremony.replaceChildren(summary.state === 'key_ceremony'
      ? ceremonyProgress(await api('GET', `/api/elections/${id}/ceremony`))
      : guardianTable(guardians));
    renderJobs(jobs.jobs, phases, jobsBox);
  };
  await refresh();
  every(3000, () => refresh().catch(() => {}));
  page('Manage election',
    overview,
    h('p', {}, h('a', { href: `#/results/${id}`, text: 'Public results & audit page' })),
    h('h2', { text: 'Key ceremony' }), ceremony,
    h('h2', { text: 'Voters' }), addVotersForm(id),
    h('h2', { text: 'Voting' }), closeVotingForm(id, refresh),
    h('h2', { text: 'Tally and decryption' }), jobButtons(id, refresh),
    h('h3', { text: 'Phases' }), phases,
    h('h3', { text: 'All jobs' }), jobsBox,
    h('h2', { text: 'Election record' }), recordSection(id));
}

function summaryList(s) {
  const row = (k, v) => [h('dt', { text: k }), h('dd', {}, v)];
  return h('dl', { class: 'summary' },
    row('Title', s.title), row('State', h('span', { class: 'tag', id: 'election-state', text: s.state })),
    row('Ballots cast', String(s.cast_ballots)), row('Ballots challenged', String(s.spoiled_ballots)),
    row('Guardians', `${s.quorum} of ${s.guardians} needed to decrypt`),
    row('Manifest hash', h('code', { text: s.manifest_hash })));
}

function guardianTable(g) {
  return h('div', {},
    h('p', { class: g.quorum_met ? 'ok' : 'hint', id: 'quorum',
      text: `${g.present} of ${g.guardians.length} guardians present for decryption; quorum ${g.quorum}: ${g.quorum_met ? 'met' : 'not met'}.` }),
    h('div', { class: 'table-scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Guardian', 'Public key', 'Proofs', 'Decryption'].map((t) => h('th', { text: t })))),
      h('tbody', {}, g.guardians.map((x) => h('tr', {},
        h('td', { text: x.guardian_id }), h('td', {}, h('code', { text: `${x.public_key_fingerprint}…` })),
        x.announced
          ? h('td', { class: x.proofs_verified ? 'ok' : 'fail', text: x.proofs_verified ? 'verified' : 'FAILED' })
          : h('td', { class: 'hint', text: 'not announced' }),
        h('td', { text: x.consented_to_decrypt ? (x.decrypts_on_own_machine ? 'present (decrypts on own machine)' : 'present') : 'missing' })))))));
}

function ceremonyInstructions() {
  return h('div', {},
    h('p', { text: 'Each guardian runs, on their own machine, with their credential file:' }),
    h('pre', {}, h('code', { text: 'amarvote guardian ceremony --credential guardian-1.json --keystore guardian-1.keystore' })),
    h('p', { class: 'hint', text: 'It generates the keys, announces the public key with its proofs, sends backups encrypted to the other guardians and verifies those received. The secret stays in the keystore, sealed under a passphrase the guardian chooses.' }));
}

/** The guardian-run ceremony, step by step for each guardian. */
function ceremonyProgress(status) {
  const mark = (done) => h('td', { class: done ? 'ok' : 'hint', text: done ? 'done' : 'waiting' });
  return h('div', { id: 'ceremony' },
    status.rejected_backups.length
      ? alertBox(`Rejected backups: ${status.rejected_backups.map(([s, r]) => `${r} rejected ${s}'s`).join('; ')}. Each sender's guardian command answers with that coordinate in clear; the ceremony waits for the answers.`)
      : h('p', { class: 'hint', text: 'Run by the guardians; voting opens when every backup is verified.' }),
    status.answered_challenges.length
      ? h('p', { class: 'hint', text: `Settled by the sender's verified answer: ${status.answered_challenges.map(([s, r]) => `${s}'s backup to ${r}`).join('; ')}.` })
      : null,
    h('div', { class: 'table-scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Guardian', 'Public key announced', 'Backups sent', 'Backups verified'].map((t) => h('th', { text: t })))),
      h('tbody', {}, status.guardians.map((g) => h('tr', { 'data-guardian': g.guardian_id },
        h('td', { text: g.guardian_id }), mark(g.announced), mark(g.backups_sent), mark(g.backups_verified)))))),
    ceremonyInstructions());
}

function addVotersForm(id) {
  const list = h('textarea', { name: 'voters', rows: 3 });
  const out = h('div');
  const form = h('form', { novalidate: true },
    field('More voters (one per line)', list, { name: 'voters' }),
    h('button', { type: 'submit', text: 'Issue credentials' }), out);
  onSubmit(form, async () => {
    const issued = await api('POST', `/api/elections/${id}/voters`, { body: { voters: linesOf(list.value) }, token: adminToken() });
    list.value = '';
    out.replaceChildren(
      h('button', { type: 'button', class: 'secondary', text: 'Download credentials (CSV)',
        onclick: () => download('voter-credentials.csv', ['voter,credential', ...issued.voters.map((v) => `${v.voter},${v.credential}`)].join('\n'), 'text/csv') }),
      h('table', { class: 'credentials' }, h('tbody', {}, issued.voters.map((v) => h('tr', {}, h('td', { text: v.voter }), h('td', {}, h('code', { text: v.credential })))))));
  }, 'voters');
  return form;
}

function closeVotingForm(id, refresh) {
  const form = h('form', {}, h('p', { class: 'hint', text: 'Voting opens once the key ceremony is complete. Closing is final: no ballot is accepted after it.' }),
    h('button', { type: 'submit', class: 'danger', text: 'Close voting' }));
  onSubmit(form, async () => {
    await api('POST', `/api/elections/${id}/close`, { token: adminToken() });
    form.replaceChildren(notice('Voting is closed.'));
    await refresh();
  });
  return form;
}

const PHASES = [
  ['tally', 'Tally', 'Adds every cast ballot into one encrypted tally, chunk by chunk.'],
  ['decrypt', 'Decrypt', 'Present guardians decrypt the tally and challenged ballots; missing guardians are compensated.'],
  ['combine', 'Combine', 'Combines the shares with Lagrange coefficients and publishes the results.'],
  ['verify', 'Verify', 'Re-checks every ballot\'s proofs and tracking code.'],
];

function jobButtons(id, refresh) {
  const form = h('form', {}, PHASES.map(([kind, label, hint]) =>
    h('div', {}, h('button', { type: 'submit', name: 'kind', value: kind, text: `Start ${label.toLowerCase()}` }), h('span', { class: 'hint', text: ` ${hint}` }))));
  onSubmit(form, async (button) => {
    await api('POST', `/api/elections/${id}/jobs`, { body: { kind: button.value }, token: adminToken() });
    await refresh();
  });
  return form;
}

const streams = new Map();

function renderJobs(jobs, phases, box) {
  phases.replaceChildren(...PHASES.map(([kind, label]) => {
    const latest = jobs.find((j) => j.kind === kind);
    return h('div', { class: 'phase', 'data-kind': kind },
      h('strong', { text: `${label}: ` }), latest ? `${latest.state}` : 'not started',
      latest ? progressBar(latest, `${label} progress`) : null);
  }));
  if (!jobs.length) { box.replaceChildren(h('p', { text: 'No jobs yet.' })); return; }
  const open = new Set([...box.querySelectorAll('details[open]')].map((d) => d.dataset.job));
  box.replaceChildren(...jobs.map((job) => jobCard(job, open.has(job.job_id))));
  for (const job of jobs) if (job.state === 'running') follow(job, box);
}

function progressBar(job, label) {
  return h('progress', { max: Math.max(job.total_chunks, 1), value: job.processed_chunks, 'aria-label': label });
}

function jobCard(job, chunksOpen) {
  const card = h('div', { class: 'job', 'data-job': job.job_id, 'data-state': job.state },
    h('p', {}, h('strong', { text: job.kind }), ' ', h('span', { class: 'tag job-state', text: job.state }),
      ` ${job.processed_chunks}/${job.total_chunks} chunks done`,
      job.failed_chunks ? h('span', { class: 'fail', text: `, ${job.failed_chunks} dead-lettered` }) : '',
      `, ${(job.elapsed_ms / 1000).toFixed(1)} s`),
    progressBar(job, `${job.kind} job progress`),
    job.error ? alertBox(job.error) : null,
    jobActions(job),
    chunkDetails(job, chunksOpen));
  return card;
}

function jobActions(job) {
  const act = (label, path, cls) => h('button', { type: 'button', class: cls, text: label,
    onclick: async (e) => {
      e.target.disabled = true;
      try { await api('POST', `/api/jobs/${job.job_id}/${path}`, { token: adminToken() }); }
      catch (error) { e.target.after(alertBox(error.message)); }
    } });
  const buttons = [];
  if (job.state === 'running') buttons.push(act('Stop', 'stop', 'secondary'));
  if (job.failed_chunks > 0) buttons.push(act('Retry dead-lettered chunks', 'resume'));
  else if (job.state === 'stopped' || job.state === 'failed') buttons.push(act('Resume', 'resume'));
  return h('div', {}, buttons);
}

function chunkDetails(job, open) {
  const body = h('div', { text: 'Loading chunks…' });
  const details = h('details', { 'data-job': job.job_id, open }, h('summary', { text: 'Chunks and timings' }), body);
  const load = async () => {
    const status = await api('GET', `/api/jobs/${job.job_id}?chunks=true`);
    body.replaceChildren(h('div', { class: 'table-scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Chunk', 'Queue', 'State', 'Attempts', 'Time', 'Error'].map((t) => h('th', { text: t })))),
      h('tbody', {}, status.chunks.map((c) => h('tr', {},
        h('td', { text: c.index }), h('td', { text: c.queue }), h('td', { text: c.state }), h('td', { text: c.attempts }),
        h('td', { text: c.duration_ms === null ? '–' : `${c.duration_ms} ms` }), h('td', { text: c.error || '' })))))));
  };
  details.addEventListener('toggle', () => { if (details.open) load().catch((e) => body.replaceChildren(alertBox(e.message))); });
  if (open) load().catch(() => {});
  return details;
}

/** Follows a running job's SSE stream, redrawing its card as chunks finish. */
function follow(job, box) {
  if (streams.has(job.job_id)) return;
  const source = new EventSource(`/api/jobs/${job.job_id}/events`);
  streams.set(job.job_id, source);
  const stop = () => { source.close(); streams.delete(job.job_id); };
  keep(stop);
  source.addEventListener('progress', (event) => {
    const status = JSON.parse(event.data);
    const card = box.querySelector(`[data-job="${job.job_id}"].job`);
    if (card) card.replaceWith(jobCard(status, card.querySelector('details')?.open));
    if (status.state !== 'running') stop();
  });
  source.onerror = stop;
}

function recordSection(id) {
  const out = h('div');
  const button = h('button', { type: 'button', class: 'secondary', text: 'List the election record files',
    onclick: async () => {
      try {
        const record = await api('GET', `/api/elections/${id}/record`);
        out.replaceChildren(
          h('p', {}, `${record.files.length} files in the reference layout. `,
            'To fetch the whole record into a directory and verify it: ',
            h('code', { text: `amarvote record --server ${location.origin} --election ${id} --out record/ && amarvote verify record/` })),
          h('ul', { class: 'plain record-files' }, record.files.map((f) =>
            h('li', {}, h('a', { href: `/api/elections/${id}/record/${f}`, download: f.replaceAll('/', '_'), text: f })))));
      } catch (error) { out.replaceChildren(alertBox(error.message)); }
    } });
  const archive = h('a', { class: 'button', href: `/api/elections/${id}/record.tar`, download: `${id}-record.tar`, text: 'Download the election record (.tar)' });
  return h('div', {}, archive, button, out);
}

function referendumAdmin() {
  const lawForm = h('form', { novalidate: true },
    field('Law id', h('input', { type: 'text', name: 'law_id' }), { name: 'law_id', hint: 'Letters, digits and dashes, e.g. loi-2026-12.' }),
    field('Title', h('input', { type: 'text', name: 'title' }), { name: 'title' }),
    h('button', { type: 'submit', text: 'Create the law' }));
  onSubmit(lawForm, async () => {
    const body = { law_id: lawForm.elements.law_id.value.trim(), title: lawForm.elements.title.value.trim() };
    await api('POST', '/api/v1/admin/laws', { body, token: adminToken() });
    lawForm.append(notice(`Law ${body.law_id} is open for votes.`));
  }, 'law_id');
  const rows = h('textarea', { name: 'voters', rows: 4 });
  const voterForm = h('form', { novalidate: true },
    field('Eligible voters: NAS,code,law_id per line', rows, { name: 'voters', hint: 'Hashed on arrival; NAS and codes are never stored. For millions of voters use amarvote referendum hashgen and load.' }),
    h('button', { type: 'submit', text: 'Load voters' }));
  onSubmit(voterForm, async () => {
    const voters = linesOf(rows.value).map((l) => { const [nas, code, law_id] = l.split(',').map((s) => s.trim()); return { nas, code, law_id }; });
    const answer = await api('POST', '/api/v1/admin/voters', { body: { voters }, token: adminToken() });
    voterForm.append(notice(`Loaded ${answer.added} new voters${answer.rejected?.length ? `; ${answer.rejected.length} rows rejected` : ''}.`));
  }, 'voters');
  return h('section', {}, h('h2', { text: 'Referendum' }), lawForm, voterForm);
}

// ---------- guardian ----------

async function guardianPage() {
  const file = h('input', { type: 'file', name: 'credential', accept: '.json,application/json' });
  const passphrase = h('input', { type: 'password', name: 'passphrase', autocomplete: 'off' });
  const status = h('div', { id: 'guardian-status' });
  const form = h('form', { novalidate: true },
    field('Credential file', file, { name: 'credential', hint: 'The guardian-….json file the administrator gave you.' }),
    field('Passphrase', passphrase, { name: 'passphrase', hint: 'It unlocks your key share on the server for this election\'s decryption only.' }),
    h('button', { type: 'submit', text: 'Consent to decrypt' }));
  let credential = null;
  const loadStatus = async () => {
    const [summary, guardians] = await Promise.all([
      api('GET', `/api/elections/${credential.election_id}`), api('GET', `/api/elections/${credential.election_id}/guardians`)]);
    const progress = summary.state === 'key_ceremony'
      ? ceremonyProgress(await api('GET', `/api/elections/${credential.election_id}/ceremony`))
      : guardianTable(guardians);
    status.replaceChildren(h('h2', { text: summary.title }),
      h('p', {}, `You are `, h('strong', { text: credential.guardian_id }), `. Election state: ${summary.state}.`),
      progress);
  };
  const errors = onSubmit(form, async () => {
    if (!credential) throw new ApiError(400, 'Choose your credential file first.', 'credential');
    if (!passphrase.value) throw new ApiError(400, 'Enter your passphrase.', 'passphrase');
    await api('POST', `/api/elections/${credential.election_id}/guardians/${credential.guardian_id}/decryption-consent`,
      { body: { passphrase: passphrase.value }, token: credential.token });
    passphrase.value = '';
    form.after(notice('Your consent is recorded: your share will be used when the administrator runs decryption.'));
    await loadStatus();
  }, 'passphrase');
  file.addEventListener('change', async () => {
    errors.clear();
    try {
      credential = JSON.parse(await file.files[0].text());
      if (!credential.election_id || !credential.guardian_id || !credential.token) throw new Error('missing fields');
      await loadStatus();
    } catch (error) {
      credential = null;
      errors.show(new ApiError(400, error instanceof ApiError ? error.message : 'This is not an AmarVote guardian credential file.', 'credential'));
    }
  });
  page('Guardian', form, status,
    h('h2', { text: 'On your own machine' }),
    h('p', { text: 'If the guardians run the key ceremony, take part with your credential file; your secret stays in the keystore file:' }),
    h('pre', {}, h('code', { text: 'amarvote guardian ceremony --credential guardian-1.json --keystore guardian-1.keystore' })),
    h('p', { text: 'Consent to decrypt from a terminal (the passphrase is asked for, or read from AMARVOTE_PASSPHRASE); add --keystore after a guardian-run ceremony:' }),
    h('pre', {}, h('code', { text: 'amarvote guardian consent --credential guardian-1.json [--keystore guardian-1.keystore]' })),
    h('p', { text: 'The server named in the file is used unless --server says otherwise.' }));
}

// ---------- voter ----------

async function votePage(id) {
  const [summary, manifest] = await Promise.all([api('GET', `/api/elections/${id}`), api('GET', `/api/elections/${id}/manifest`)]);
  const contests = ballotLayout(manifest);
  if (summary.state !== 'open') {
    const why = summary.state === 'key_ceremony' ? 'Voting opens when the guardians finish the key ceremony.' : `Voting is ${summary.state}.`;
    return page(summary.title, notice(why), h('a', { href: `#/results/${id}`, text: 'See the results and audit page' }));
  }
  const credential = h('input', { type: 'password', name: 'credential', autocomplete: 'off' });
  const form = h('form', { novalidate: true },
    field('Your one-time voting credential', credential, { name: 'credential' }),
    h('button', { type: 'submit', text: 'Sign in' }));
  onSubmit(form, async () => {
    const token = credential.value.trim();
    if (!token) throw new ApiError(400, 'Enter your credential.', 'credential');
    await api('GET', `/api/elections/${id}/voters/me`, { token });
    markBallot({ id, summary, contests, token, marks: {} });
  }, 'credential');
  page(summary.title, h('p', { text: 'Sign in, mark your ballot, review it, then cast it, or challenge it to check that it was encrypted as you marked it.' }), form);
}

function markBallot(vote) {
  const form = h('form', { novalidate: true, class: 'ballot' }, vote.contests.map((c) => contestChoices(c, vote.marks[c.id] || [])),
    h('button', { type: 'submit', text: 'Review my ballot' }));
  onSubmit(form, async () => {
    vote.marks = {};
    for (const c of vote.contests) {
      vote.marks[c.id] = [...form.querySelectorAll(`input[data-contest="${c.id}"]:checked`)].map((i) => i.value);
      if (vote.marks[c.id].length > c.votesAllowed) throw new ApiError(400, `Choose at most ${c.votesAllowed}.`, c.id);
    }
    reviewBallot(vote);
  });
  page(vote.summary.title, form);
}

function contestChoices(contest, marked) {
  const single = contest.votesAllowed === 1;
  const inputs = contest.selections.map((s) => h('input', {
    type: single ? 'radio' : 'checkbox', name: contest.id, value: s.id, id: `${s.id}`, 'data-contest': contest.id, checked: marked.includes(s.id) }));
  const limit = () => {
    if (single) return;
    const full = inputs.filter((i) => i.checked).length >= contest.votesAllowed;
    inputs.forEach((i) => { i.disabled = full && !i.checked; });
  };
  inputs.forEach((i) => i.addEventListener('change', limit));
  limit();
  const box = h('fieldset', { 'data-field': contest.id },
    h('legend', { text: contest.name }),
    h('p', { class: 'hint', text: single ? 'Choose one, or none.' : `Choose up to ${contest.votesAllowed}.` }),
    contest.selections.map((s, k) => h('label', { class: 'choice', for: s.id }, inputs[k], s.name)),
    h('p', { class: 'field-error', hidden: true }));
  return box;
}

function choiceList(vote, marks) {
  return h('dl', { class: 'choices' }, vote.contests.flatMap((c) => {
    const chosen = c.selections.filter((s) => (marks[c.id] || []).includes(s.id)).map((s) => s.name);
    return [h('dt', { text: c.name }), h('dd', { text: chosen.length ? chosen.join(', ') : 'no selection' })];
  }));
}

function reviewBallot(vote) {
  const form = h('form', {},
    choiceList(vote, vote.marks),
    h('button', { type: 'button', class: 'secondary', text: 'Change my choices', onclick: () => markBallot(vote) }),
    h('button', { type: 'submit', text: 'Encrypt my ballot' }));
  onSubmit(form, async () => {
    const encrypted = await api('POST', `/api/elections/${vote.id}/ballots/encrypt`, { body: { choices: vote.marks }, token: vote.token });
    castOrChallenge(vote, encrypted);
  });
  page('Review your ballot', form);
}

function castOrChallenge(vote, encrypted) {
  const form = h('form', {},
    h('p', {}, 'Your ballot is encrypted. Its fingerprint: ', h('code', { text: encrypted.crypto_hash.slice(0, 16) })),
    h('p', { class: 'hint', text: 'Cast it to count it, or challenge it: the server then opens this encryption so you can check it holds your choices; a challenged ballot is never counted, and you vote again.' }),
    h('button', { type: 'submit', name: 'action', value: 'cast', text: 'Cast my ballot' }),
    h('button', { type: 'submit', name: 'action', value: 'challenge', class: 'secondary', text: 'Challenge (check the encryption)' }));
  onSubmit(form, async (button) => {
    const receipt = await api('POST', `/api/elections/${vote.id}/ballots/${encrypted.ballot_id}/${button.value}`, { token: vote.token });
    if (button.value === 'cast') castReceipt(vote, receipt);
    else challengeReceipt(vote, receipt);
  });
  page('Cast or challenge', form);
}

function castReceipt(vote, receipt) {
  page('Your ballot is cast',
    notice('Thank you. Your ballot is in the ballot box.'),
    h('p', {}, 'Your tracking code: ', h('span', { class: 'code-big', id: 'tracking-code', text: receipt.tracking_code })),
    h('p', { class: 'hint', text: 'Keep it: with it you can check, on the results page, that your ballot is counted as cast.' }),
    h('a', { class: 'button', href: `#/results/${vote.id}`, text: 'Verify my vote' }));
}

function challengeReceipt(vote, receipt) {
  const same = vote.contests.every((c) => JSON.stringify([...(receipt.revealed[c.id] || [])].sort()) === JSON.stringify([...(vote.marks[c.id] || [])].sort()));
  page('Your challenged ballot',
    h('p', { class: same ? 'ok' : 'fail', id: 'challenge-verdict',
      text: same ? 'The encryption holds exactly the choices you marked.' : 'The decrypted choices differ from what you marked. Report this to the election officials.' }),
    h('p', {}, 'It was opened to:'), choiceList(vote, receipt.revealed),
    h('p', {}, 'Its tracking code, listed as challenged: ', h('code', { text: receipt.tracking_code })),
    h('button', { type: 'button', text: 'Start again', onclick: () => markBallot(vote) }));
}

// ---------- results and audit ----------

async function resultsPage(id) {
  const [summary, manifest] = await Promise.all([api('GET', `/api/elections/${id}`), api('GET', `/api/elections/${id}/manifest`)]);
  const contests = ballotLayout(manifest);
  const results = await api('GET', `/api/elections/${id}/results`).catch((e) => e);
  const verification = await api('GET', `/api/elections/${id}/verification`).catch((e) => e);
  const { ballots } = await api('GET', `/api/elections/${id}/ballots`);
  page(`Results: ${summary.title}`,
    h('p', {}, `State: `, h('span', { class: 'tag', text: summary.state }), `. ${summary.cast_ballots} ballots cast, ${summary.spoiled_ballots} challenged.`),
    results instanceof Error ? notice(results.message) : resultTables(contests, results),
    h('h2', { text: 'Verify my vote' }), trackingForm(id),
    h('h2', { text: 'Verification report' }),
    verification instanceof Error ? notice(verification.message) : verificationReport(verification),
    h('h2', { text: 'Tracking codes in the ballot box' }), codeList(ballots));
}

function resultTables(contests, results) {
  const votes = {};
  for (const c of results.contests) for (const s of c.selections) votes[s.selection_id] = s.votes;
  return h('div', { id: 'results' }, contests.map((c) => {
    const total = c.selections.reduce((n, s) => n + (votes[s.id] || 0), 0);
    return h('section', { class: 'card', 'data-contest': c.id },
      h('h2', { text: c.name }),
      h('table', {}, h('thead', {}, h('tr', {}, ['Choice', 'Votes', 'Share', ''].map((t) => h('th', { text: t })))),
        h('tbody', {}, c.selections.map((s) => {
          const n = votes[s.id] || 0;
          const share = total ? (100 * n) / total : 0;
          return h('tr', { 'data-selection': s.id },
            h('td', { text: s.name }), h('td', { class: 'votes', text: String(n) }), h('td', { text: `${share.toFixed(1)}%` }),
            h('td', {}, bar(share)));
        }))),
      h('p', { class: 'hint', text: `${total} votes in this contest.` }));
  }));
}

/** A horizontal bar; its width set through the CSSOM, which the content policy allows. */
function bar(percent) {
  const fill = h('span');
  fill.style.width = `${percent}%`;
  return h('div', { class: 'bar', 'aria-hidden': 'true' }, fill);
}

function trackingForm(id) {
  const code = h('input', { type: 'text', name: 'code', autocomplete: 'off' });
  const out = h('div', { role: 'status' });
  const form = h('form', { novalidate: true },
    field('Tracking code', code, { name: 'code' }), h('button', { type: 'submit', text: 'Look it up' }), out);
  onSubmit(form, async () => {
    if (!code.value.trim()) throw new ApiError(400, 'Enter the tracking code from your receipt.', 'code');
    const ballot = await api('GET', `/api/elections/${id}/tracking/${encodeURIComponent(code.value.trim())}`);
    out.replaceChildren(notice(`Found: this ballot is ${ballot.state === 'cast' ? 'cast and counted in the tally' : ballot.state}. Fingerprint ${ballot.crypto_hash.slice(0, 16)}.`));
  }, 'code');
  return form;
}

function verificationReport(report) {
  const checks = Object.entries(report.checks || {});
  return h('div', { id: 'verification' },
    h('p', { class: report.failures.length ? 'fail' : 'ok',
      text: report.failures.length ? `${report.failures.length} failures in ${report.checked} ballots.` : `All ${report.checked} ballots verified.` }),
    h('table', {}, h('thead', {}, h('tr', {}, ['Check', 'Passed', 'Failed'].map((t) => h('th', { text: t })))),
      h('tbody', {}, checks.map(([name, c]) => h('tr', {}, h('td', { text: name }), h('td', { text: c.passed }), h('td', { text: c.failed }))))),
    report.failures.length ? h('ul', {}, report.failures.slice(0, 50).map((f) => h('li', { text: f }))) : null);
}

function codeList(ballots) {
  if (!ballots.length) return h('p', { text: 'No ballots yet.' });
  return h('div', { class: 'table-scroll' }, h('table', { id: 'codes' },
    h('thead', {}, h('tr', {}, h('th', { text: 'Tracking code' }), h('th', { text: 'State' }))),
    h('tbody', {}, ballots.map((b) => h('tr', {}, h('td', {}, h('code', { text: b.tracking_code })), h('td', { text: b.state }))))));
}

// ---------- referendum ----------

async function referendumPage() {
  const { laws } = await api('GET', '/api/v1/laws');
  const law = h('select', { name: 'law_id' }, laws.map((l) => h('option', { value: l.law_id, text: l.title ? `${l.title} (${l.law_id})` : l.law_id })));
  const choice = (value, label) => h('label', { class: 'choice' }, h('input', { type: 'radio', name: 'vote', value }), label);
  const form = h('form', { novalidate: true },
    field('NAS (9 digits)', h('input', { type: 'text', name: 'nas', inputmode: 'numeric', autocomplete: 'off' }), { name: 'nas' }),
    field('Code from your letter', h('input', { type: 'text', name: 'code', autocomplete: 'off' }), { name: 'code' }),
    field('Law', law, { name: 'law_id' }),
    h('fieldset', { 'data-field': 'vote' }, h('legend', { text: 'Your answer' }), choice('oui', 'Oui'), choice('non', 'Non'),
      h('p', { class: 'field-error', hidden: true })),
    h('button', { type: 'submit', text: 'Submit my vote' }));
  onSubmit(form, async () => {
    const body = { nas: form.elements.nas.value.trim(), code: form.elements.code.value.trim(), law_id: law.value,
      vote: form.querySelector('input[name=vote]:checked')?.value };
    if (!body.vote) throw new ApiError(400, 'Choose oui or non.', 'vote');
    const answer = await api('POST', '/api/v1/vote', { body });
    location.hash = `#/referendum/outcome/${answer.request_id}`;
  });
  const totals = h('div', { id: 'law-totals' });
  const refresh = async () => totals.replaceChildren(lawTotals((await api('GET', '/api/v1/laws')).laws));
  await refresh();
  every(2000, () => refresh().catch(() => {}));
  page('Referendum', laws.length ? form : notice('No law is open for votes.'), h('h2', { text: 'Live totals' }), totals);
}

function lawTotals(laws) {
  if (!laws.length) return h('p', { text: 'No laws yet.' });
  return h('table', {}, h('thead', {}, h('tr', {}, ['Law', 'Oui', 'Non', 'Oui share'].map((t) => h('th', { text: t })))),
    h('tbody', {}, laws.map((l) => {
      const share = l.oui + l.non ? (100 * l.oui) / (l.oui + l.non) : 0;
      return h('tr', { 'data-law': l.law_id }, h('td', { text: l.title || l.law_id }), h('td', { class: 'oui', text: l.oui }), h('td', { class: 'non', text: l.non }),
        h('td', {}, `${share.toFixed(1)}%`, bar(share)));
    })));
}

async function referendumOutcomePage(requestId) {
  const out = h('div', { id: 'outcome', role: 'status', 'aria-live': 'polite' }, h('p', { text: 'Your vote is received; checking it…' }));
  page('Your vote', out, h('p', { class: 'hint' }, 'Request ', h('code', { text: requestId })));
  const check = async () => {
    const status = await api('GET', `/api/v1/vote/${requestId}`);
    if (status.status === 'pending') return;
    const text = {
      accepted: 'Accepted: your vote is counted.',
      duplicate: `Already voted: ${status.attempts} repeated ${status.attempts === 1 ? 'attempt' : 'attempts'} after your vote. Only your first vote counts.`,
      not_eligible: 'Not eligible: this NAS and code do not match a voter for this law.',
      locked: 'Locked: too many wrong codes were tried with this NAS for this law. Call the referendum help line to have it unlocked.',
    }[status.status] || status.status;
    out.replaceChildren(h('p', { class: status.status === 'accepted' ? 'notice' : 'alert', 'data-status': status.status, text }));
    cleanups.forEach((stop) => stop());
    cleanups = [];
  };
  every(500, () => check().catch((e) => out.replaceChildren(alertBox(e.message))));
  await check();
}

window.addEventListener('hashchange', route);
route();
