// AmarVote's web pages: one script, no build step. Every page calls the public HTTP API
// (see /api/openapi.json); nothing here holds a secret longer than the page needs it.
// The voter, results and referendum pages speak the language of web/i18n/<lang>.json;
// the administrator's and guardians' pages are in English.

const main = document.getElementById('main');
const ADMIN_KEY = 'amarvote.admin-token';

// ---------- languages ----------

const LANG_KEY = 'amarvote.lang';
/** Redraws the step of a flow (ballot, review, receipt…) the voter is on; null on a plain page. */
let currentStep = null;
const LANGUAGES = { en: 'English', fr: 'Français', bn: 'বাংলা' };
let lang = 'en';
let messages = {};
let english = {};

/** The remembered choice, else the first of the browser's languages we have, else English. */
function preferredLanguage() {
  const stored = localStorage.getItem(LANG_KEY);
  if (Object.hasOwn(LANGUAGES, stored)) return stored;
  const wanted = (navigator.languages || [navigator.language || 'en']).map((l) => l.toLowerCase().split('-')[0]);
  return wanted.find((l) => Object.hasOwn(LANGUAGES, l)) || 'en';
}

async function catalog(code) {
  const response = await fetch(`/assets/i18n/${code}.json`);
  if (!response.ok) throw new Error(`no message catalog for ${code}`);
  return response.json();
}

async function useLanguage(code) {
  english = Object.keys(english).length ? english : await catalog('en');
  messages = code === 'en' ? english : await catalog(code);
  lang = code;
  document.documentElement.lang = code;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  const picker = document.getElementById('language');
  if (picker) picker.value = code;
}

/** A message in the page's language (English where a catalog lacks it), `{name}` filled in. */
function t(key, params = {}) {
  return fill(messages[key] ?? english[key] ?? key, params);
}

function fill(text, params) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/** A message in English, for the officials' pages. */
function en(key, params = {}) {
  return fill(english[key] ?? key, params);
}

/** A message whose count decides its form: `key.one`, `key.other`, … by the language's rules. */
function tn(key, n, params = {}) {
  const form = new Intl.PluralRules(lang).select(n);
  const chosen = `${key}.${form}` in messages || `${key}.${form}` in english ? `${key}.${form}` : `${key}.other`;
  return t(chosen, { n: num(n), ...params });
}

/** A message with elements in it: `{name}` placeholders become the given nodes. */
function rich(key, nodes) {
  return t(key).split(/(\{\w+\})/).filter(Boolean).map((part) => {
    const name = /^\{(\w+)\}$/.exec(part)?.[1];
    return name && nodes[name] !== undefined ? nodes[name] : part;
  });
}

const num = (n) => new Intl.NumberFormat(lang).format(n);
const percent = (share) => new Intl.NumberFormat(lang, { style: 'percent', minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(share / 100);
const stateName = (state) => t(`state.${state}`);

function languagePicker() {
  const picker = document.getElementById('language');
  for (const [code, name] of Object.entries(LANGUAGES)) picker.append(h('option', { value: code, lang: code, text: name }));
  picker.value = lang;
  picker.addEventListener('change', async () => {
    localStorage.setItem(LANG_KEY, picker.value);
    const typed = formValues();
    await useLanguage(picker.value);
    if (currentStep) currentStep();
    else await route();
    restoreFormValues(typed);
    picker.focus();
  });
}

/** What is typed, chosen and ticked on the page, by field name. */
function formValues() {
  const values = [];
  for (const el of main.querySelectorAll('input[name], select[name], textarea[name]')) {
    if (el.type === 'file') continue;
    values.push([el.name, el.type === 'radio' || el.type === 'checkbox' ? `${el.value}:${el.checked}` : el.value, el.type]);
  }
  return values;
}

/** Puts typed values back after the page was drawn again in another language. */
function restoreFormValues(values) {
  for (const [name, value, type] of values) {
    for (const el of main.querySelectorAll(`[name="${CSS.escape(name)}"]`)) {
      if (el.type !== type) continue;
      if (type === 'radio' || type === 'checkbox') {
        if (`${el.value}:true` === value) el.checked = true;
        if (`${el.value}:false` === value) el.checked = false;
        el.dispatchEvent(new Event('change'));
      } else el.value = value;
    }
  }
}

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
  /** `fromServer`: the message is the server's own (English) wording, not from a catalog. */
  constructor(status, message, field, fromServer = false) {
    super(message);
    this.status = status;
    this.field = field;
    this.fromServer = fromServer;
  }
}

/** Marks where an error's words are the server's English, so a screen reader on a French or
 * Bengali page reads them as English; a catalog message takes the page's language. */
function markLanguageOf(el, error) {
  if (error.fromServer) el.lang = 'en';
  else el.removeAttribute('lang');
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
    throw new ApiError(0, t('common.error.network'));
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
  if (response.status === 429) throw new ApiError(429, t('common.error.busy'));
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, data && data.field, true);
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
        markLanguageOf(err, error);
        err.hidden = false;
        const input = target.querySelector('input, select, textarea');
        if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
      } else {
        general.textContent = error.message;
        markLanguageOf(general, error);
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
      buttons.forEach((b) => { b.disabled = b.hasAttribute('data-blocked'); });
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

/** Shows a page in the chosen language; absent children (null, false) are left out. */
function page(title, ...children) {
  main.removeAttribute('lang');
  showPage(title, children);
}

/** Shows one of the officials' pages, which are in English whatever the chosen language. */
function officialPage(title, ...children) {
  main.setAttribute('lang', 'en');
  showPage(title, children);
}

function showPage(title, children) {
  document.title = `${title} · AmarVote`;
  main.replaceChildren(h('h1', { text: title }), ...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  main.focus();
}

const drawnFrom = new WeakMap();

/** Whether `data` differs from what `box` was last drawn from (and remembers it). */
function changed(box, data) {
  const key = JSON.stringify(data);
  if (drawnFrom.get(box) === key) return false;
  drawnFrom.set(box, key);
  return true;
}

/** Redraws a polled part of a page only when its data changed, so that the keyboard focus
 * of someone reading it survives the polling. */
function redraw(box, data, build) {
  if (changed(box, data)) box.replaceChildren(build(data));
}

/** A table that may scroll sideways on a narrow screen: a labelled region the keyboard can reach and scroll. */
const scrollable = (label, table) => h('div', { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': label }, table);

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
      // The administrator's words keep their own language mark, whatever the page's language.
      nameLang: c.ballot_title?.text?.[0]?.language || undefined,
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
/** Runs `work` every `ms` while the page is shown; returns what stops it sooner. */
function every(ms, work) {
  const timer = setInterval(work, ms);
  const stop = () => clearInterval(timer);
  keep(stop);
  return stop;
}
function stopPageWork() {
  cleanups.forEach((stop) => stop());
  cleanups = [];
}

const routes = [
  [/^$|^\/$/, homePage],
  [/^\/admin$/, adminPage],
  [/^\/admin\/new$/, newElectionPage],
  [/^\/admin\/election\/([\w-]+)$/, electionAdminPage],
  [/^\/guardian$/, guardianPage],
  [/^\/vote$/, () => electionChooser(t('vote.chooser'), 'open', (id) => `#/vote/${id}`)],
  [/^\/vote\/([\w-]+)$/, votePage],
  [/^\/results$/, () => electionChooser(t('results.chooser'), null, (id) => `#/results/${id}`)],
  [/^\/results\/([\w-]+)$/, resultsPage],
  [/^\/referendum$/, referendumPage],
  [/^\/referendum\/outcome\/([\w-]+)$/, referendumOutcomePage],
];

let routing = Promise.resolve();

/** Shows the page the address names. One at a time: a slow page finishes before the next
 * starts, so it can neither draw over the next page nor leave its timers running. */
function route() {
  routing = routing.then(async () => {
    stopPageWork();
    currentStep = null;
    main.setAttribute('aria-busy', 'true');
    try {
      await render(location.hash.replace(/^#/, ''));
    } finally {
      main.removeAttribute('aria-busy');
    }
  });
  return routing;
}

async function render(path) {
  for (const [pattern, show] of routes) {
    const match = pattern.exec(path);
    if (match) {
      try {
        await show(...match.slice(1));
      } catch (error) {
        const box = alertBox(error.message);
        markLanguageOf(box, error);
        page(t('common.error.title'), box);
      }
      return;
    }
  }
  page(t('common.notFound.title'), h('p', {}, rich('common.notFound.text', { link: h('a', { href: '#/', text: t('common.notFound.link') }) })));
}

// ---------- start page and election lists ----------

async function homePage() {
  const { elections } = await api('GET', '/api/elections');
  const item = (key, href) => h('li', {}, rich(key, { link: h('a', { href, text: t(`${key}.link`) }) }));
  page('AmarVote',
    h('p', { text: t('home.intro') }),
    h('ul', {},
      item('home.vote', '#/vote'), item('home.results', '#/results'), item('home.guardians', '#/guardian'),
      item('home.admins', '#/admin'), item('home.referendum', '#/referendum')),
    h('h2', { text: t('home.elections') }),
    electionTable(elections, (e) => [
      h('a', { href: `#/vote/${e.election_id}`, text: t('home.voteIn'), 'aria-label': `${t('home.voteIn')}: ${e.title}` }), ' · ',
      h('a', { href: `#/results/${e.election_id}`, text: t('home.resultsOf'), 'aria-label': `${t('home.resultsOf')}: ${e.title}` })]));
}

/** The elections with their state; `say` is `t`, or `en` on the officials' English pages. */
function electionTable(elections, actions, say = t) {
  if (!elections.length) return h('p', { text: say('home.none') });
  return scrollable(say('home.elections'), h('table', {},
    h('thead', {}, h('tr', {}, ['home.col.title', 'home.col.state', 'home.col.guardians', 'home.col.actions'].map((k) => h('th', { scope: 'col', text: say(k) })))),
    h('tbody', {}, elections.map((e) => h('tr', {},
      h('td', { text: e.title }), h('td', {}, h('span', { class: 'tag', text: say(`state.${e.state}`) })),
      h('td', { text: say('home.quorum', { quorum: e.quorum, guardians: e.guardians }) }), h('td', {}, actions(e)))))));
}

async function electionChooser(title, state, link) {
  const { elections } = await api('GET', '/api/elections');
  const shown = state ? elections.filter((e) => e.state === state) : elections;
  page(title, shown.length
    ? h('ul', {}, shown.map((e) => h('li', {}, h('a', { href: link(e.election_id), text: e.title }), ` (${stateName(e.state)})`)))
    : h('p', { text: state ? t('home.noneOpen') : t('home.none') }));
}

// ---------- administrator ----------

/** Whether the kept token is still the administrator's (the server may have a new one since). */
async function adminSignedIn() {
  if (!adminToken()) return false;
  const valid = await api('GET', '/api/admin', { token: adminToken() }).then(() => true, (error) => {
    if (error.status === 401 || error.status === 403) return false;
    throw error;
  });
  if (!valid) sessionStorage.removeItem(ADMIN_KEY);
  return valid;
}

async function adminPage() {
  if (!(await adminSignedIn())) return adminSignIn();
  const { elections } = await api('GET', '/api/elections');
  const signOut = h('button', { type: 'button', class: 'secondary', text: 'Sign out',
    onclick: () => { sessionStorage.removeItem(ADMIN_KEY); route(); } });
  officialPage('Administrator',
    h('a', { class: 'button', href: '#/admin/new', text: 'Create an election' }), signOut,
    h('h2', { text: 'Elections' }),
    electionTable(elections, (e) => h('a', { href: `#/admin/election/${e.election_id}`, text: 'Manage', 'aria-label': `Manage ${e.title}` }), en),
    referendumAdmin());
}

function adminSignIn() {
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'current-password', required: true });
  const form = h('form', { novalidate: true },
    field('Administrator token', token, { name: 'token', hint: 'The token in the server\'s data directory (admin.token).' }),
    h('button', { type: 'submit', text: 'Sign in' }));
  onSubmit(form, async () => {
    if (!token.value.trim()) throw new ApiError(400, 'Enter the administrator token.', 'token');
    await api('GET', '/api/admin', { token: token.value.trim() }).catch((error) => {
      if (error.status !== 401 && error.status !== 403) throw error;
      throw new ApiError(error.status, 'This is not the administrator token. Copy it again from admin.token in the server\'s data directory.', 'token');
    });
    sessionStorage.setItem(ADMIN_KEY, token.value.trim());
    route();
  }, 'token');
  officialPage('Administrator sign-in', form);
}

const CEREMONY_HINTS = {
  guardians: 'Each guardian generates their own keys on their own machine: no guardian secret reaches the server until that guardian consents to decrypt.',
  server: 'This server generates every guardian\'s keys and keeps each sealed under that guardian\'s passphrase: convenient, but you trust this server with the secrets.',
};

/** The key-ceremony choice, whose hint says what the chosen way means. */
function ceremonyChoice() {
  const select = h('select', { name: 'key_ceremony' },
    h('option', { value: 'guardians', text: 'Run by the guardians on their own machines' }),
    h('option', { value: 'server', text: 'Generated on this server (convenience)' }));
  const box = field('Key ceremony', select, { name: 'key_ceremony', hint: CEREMONY_HINTS.guardians });
  select.addEventListener('change', () => { box.querySelector('.hint').textContent = CEREMONY_HINTS[select.value]; });
  return box;
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
  if (!(await adminSignedIn())) return adminSignIn();
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
      ceremonyChoice(),
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
  officialPage('Create an election', form);
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
    scrollable('Voter credentials', h('table', { class: 'credentials' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Voter' }), h('th', { text: 'Credential' }))),
      h('tbody', {}, issued.voters.map((v) => h('tr', {}, h('td', { text: v.voter }), h('td', {}, h('code', { text: v.credential }))))))),
  ] : [];
  officialPage('Election created',
    byGuardians
      ? notice('The guardians now run the key ceremony, each on their own machine; voting opens when every backup is verified.')
      : notice(`The key ceremony is complete: every guardian's proofs and backups were verified and the joint key is published.`),
    byGuardians ? ceremonyInstructions() : null,
    h('p', {}, 'Election id ', h('code', { id: 'election-id', text: created.election_id })),
    h('h2', { text: 'Guardian credentials' }),
    h('p', { class: 'hint', text: byGuardians ? 'Shown once. Give each guardian their credential file.' : 'Shown once. Give each guardian their credential file and, by another channel, their passphrase.' }),
    scrollable('Guardian credentials', h('table', { class: 'guardian-credentials' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Guardian' }), h('th', { text: 'Passphrase' }), h('th', { text: 'Credential file' }))),
      h('tbody', {}, guardianRows))),
    ...voterSection,
    h('a', { class: 'button', href: `#/admin/election/${created.election_id}`, text: 'Manage this election' }));
}

async function electionAdminPage(id) {
  if (!(await adminSignedIn())) return adminSignIn();
  const overview = h('div');
  const ceremony = h('div');
  const jobsBox = h('div', { id: 'jobs' });
  const phases = h('div', { id: 'phases' });
  const quorum = h('div');
  let starts = null;
  let closing = null;
  const refresh = async () => {
    const [summary, guardians, jobs] = await Promise.all([
      api('GET', `/api/elections/${id}`), api('GET', `/api/elections/${id}/guardians`), api('GET', `/api/elections/${id}/jobs`)]);
    redraw(overview, summary, summaryList);
    if (summary.state === 'key_ceremony') redraw(ceremony, await api('GET', `/api/elections/${id}/ceremony`), ceremonyProgress);
    else redraw(ceremony, guardians, keyTable);
    redraw(quorum, guardians, quorumTable);
    closing.update(summary);
    starts.update(summary, guardians, jobs.jobs);
    if (changed(jobsBox, jobs.jobs)) renderJobs(jobs.jobs, phases, jobsBox);
  };
  starts = jobButtons(id, refresh);
  closing = closeVotingForm(id, refresh);
  await refresh();
  every(3000, () => refresh().catch(() => {}));
  officialPage('Manage election',
    overview,
    h('p', {}, h('a', { href: `#/results/${id}`, text: 'Public results & audit page' })),
    h('h2', { text: 'Key ceremony' }), ceremony,
    h('h2', { text: 'Voters' }), addVotersForm(id),
    h('h2', { text: 'Voting' }), closing,
    h('h2', { text: 'Tally and decryption' }),
    h('h3', { text: 'Guardians present for decryption' }), quorum,
    h('h3', { text: 'Start a phase' }), starts,
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

/** Each guardian's announced key and whether its proofs verify: the key ceremony's outcome. */
function keyTable(g) {
  return scrollable('Guardian keys', h('table', { class: 'guardian-keys' },
    h('thead', {}, h('tr', {}, ['Guardian', 'Public key', 'Proofs'].map((text) => h('th', { scope: 'col', text })))),
    h('tbody', {}, g.guardians.map((x) => h('tr', {},
      h('td', { text: x.guardian_id }), h('td', {}, h('code', { text: `${x.public_key_fingerprint}…` })),
      x.announced
        ? h('td', { class: x.proofs_verified ? 'ok' : 'fail', text: x.proofs_verified ? 'verified' : 'FAILED' })
        : h('td', { class: 'hint', text: 'not announced' }))))));
}

/** Who has consented to decrypt, against the quorum decryption needs. */
function quorumTable(g) {
  return h('div', {},
    h('p', { class: g.quorum_met ? 'ok' : 'hint', id: 'quorum',
      text: `${g.present} of ${g.guardians.length} guardians present for decryption; quorum ${g.quorum}: ${g.quorum_met ? 'met' : 'not met'}.` }),
    scrollable('Guardians present for decryption', h('table', { class: 'guardian-presence' },
      h('thead', {}, h('tr', {}, ['Guardian', 'Decryption'].map((text) => h('th', { scope: 'col', text })))),
      h('tbody', {}, g.guardians.map((x) => h('tr', {},
        h('td', { text: x.guardian_id }),
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
    scrollable('Key ceremony progress', h('table', {},
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

/** Close voting: pressable only while voting is open, with what closing means or why not. */
function closeVotingForm(id, refresh) {
  const why = h('p', { class: 'hint', id: 'close-why' });
  const button = h('button', { type: 'submit', class: 'danger', text: 'Close voting', 'aria-describedby': why.id, disabled: true, 'data-blocked': '' });
  const form = h('form', {}, why, button);
  onSubmit(form, async () => {
    await api('POST', `/api/elections/${id}/close`, { token: adminToken() });
    await refresh();
  });
  form.update = (summary) => {
    const open = summary.state === 'open';
    button.disabled = !open;
    button.toggleAttribute('data-blocked', !open);
    why.textContent = open ? 'Closing is final: no ballot is accepted after it.'
      : summary.state === 'key_ceremony' ? 'Voting opens once the key ceremony is complete.' : 'Voting is closed.';
  };
  return form;
}

const PHASES = [
  ['tally', 'Tally', 'Adds every cast ballot into one encrypted tally, chunk by chunk.'],
  ['decrypt', 'Decrypt', 'Present guardians decrypt the tally and challenged ballots; missing guardians are compensated.'],
  ['combine', 'Combine', 'Combines the shares with Lagrange coefficients and publishes the results.'],
  ['verify', 'Verify', 'Re-checks every ballot\'s proofs and tracking code.'],
];

/** Why a phase cannot start now (the server's own preconditions), or null when it can. */
function blockedPhase(kind, summary, guardians, jobs) {
  if (jobs.some((j) => j.kind === kind && (j.state === 'running' || j.state === 'finalizing'))) return `A ${kind} job is running.`;
  const order = ['key_ceremony', 'open', 'closed', 'tallied', 'decrypted', 'published'];
  const at = order.indexOf(summary.state);
  const votingOn = at <= order.indexOf('open');
  switch (kind) {
    case 'tally':
      return votingOn ? 'Close voting first.' : at > order.indexOf('closed') ? 'The tally is done.' : null;
    case 'decrypt':
      if (at < order.indexOf('tallied')) return votingOn ? 'Close voting, then run the tally.' : 'Run the tally first.';
      if (at > order.indexOf('tallied')) return 'Decryption is done.';
      return guardians.quorum_met ? null
        : `${guardians.present} of ${guardians.guardians.length} guardians have consented to decrypt; ${guardians.quorum} are needed.`;
    case 'combine':
      if (at < order.indexOf('decrypted')) return 'Run the decryption first.';
      return at > order.indexOf('decrypted') ? 'The results are published.' : null;
    default:
      // The server verifies whatever is in the ballot box, even while voting goes on.
      return summary.state === 'key_ceremony' ? 'Nothing to verify before the key ceremony ends.' : null;
  }
}

/** The four Start buttons, each enabled only when the election's state lets its phase run. */
function jobButtons(id, refresh) {
  const rows = PHASES.map(([kind, label, hint]) => {
    const why = h('span', { class: 'hint', id: `phase-why-${kind}` });
    const button = h('button', { type: 'submit', name: 'kind', value: kind, text: `Start ${label.toLowerCase()}`,
      'aria-describedby': why.id, disabled: true, 'data-blocked': '' });
    return { kind, hint, button, why };
  });
  const form = h('form', { class: 'phase-starts' }, rows.map((r) => h('div', { class: 'phase-start' }, r.button, ' ', r.why)));
  onSubmit(form, async (button) => {
    await api('POST', `/api/elections/${id}/jobs`, { body: { kind: button.value }, token: adminToken() });
    await refresh();
  });
  form.update = (summary, guardians, jobs) => {
    for (const r of rows) {
      const blocked = blockedPhase(r.kind, summary, guardians, jobs);
      r.button.disabled = Boolean(blocked);
      r.button.toggleAttribute('data-blocked', Boolean(blocked));
      r.why.textContent = blocked || r.hint;
    }
  };
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
    body.replaceChildren(scrollable('Chunks', h('table', {},
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
  const consentPart = h('div', {},
    field('Passphrase', passphrase, { name: 'passphrase', hint: 'It unlocks your key share on the server for this election\'s decryption only.' }),
    h('button', { type: 'submit', text: 'Consent to decrypt' }));
  const consented = notice('Your consent is recorded: your share will be used when the administrator runs decryption.');
  consented.hidden = true;
  consented.tabIndex = -1;
  const form = h('form', { novalidate: true },
    field('Credential file', file, { name: 'credential', hint: 'The guardian-….json file the administrator gave you.' }),
    consentPart, consented);
  let credential = null;
  const loadStatus = async () => {
    const [summary, guardians] = await Promise.all([
      api('GET', `/api/elections/${credential.election_id}`), api('GET', `/api/elections/${credential.election_id}/guardians`)]);
    const progress = summary.state === 'key_ceremony'
      ? [ceremonyProgress(await api('GET', `/api/elections/${credential.election_id}/ceremony`))]
      : [h('h3', { text: 'Key ceremony' }), keyTable(guardians), h('h3', { text: 'Decryption' }), quorumTable(guardians)];
    const me = guardians.guardians.find((g) => g.guardian_id === credential.guardian_id);
    // A guardian who has consented has nothing more to give here: no passphrase field, no button.
    consentPart.hidden = Boolean(me?.consented_to_decrypt);
    consented.hidden = !me?.consented_to_decrypt;
    status.replaceChildren(h('h2', { text: summary.title }),
      h('p', {}, `You are `, h('strong', { text: credential.guardian_id }), `. Election state: ${summary.state}.`),
      ...progress);
  };
  const errors = onSubmit(form, async () => {
    if (!credential) throw new ApiError(400, 'Choose your credential file first.', 'credential');
    if (!passphrase.value) throw new ApiError(400, 'Enter your passphrase.', 'passphrase');
    await api('POST', `/api/elections/${credential.election_id}/guardians/${credential.guardian_id}/decryption-consent`,
      { body: { passphrase: passphrase.value }, token: credential.token });
    passphrase.value = '';
    await loadStatus();
    consented.focus();
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
  officialPage('Guardian', form, status,
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
    const why = summary.state === 'key_ceremony' ? t('vote.notOpen.ceremony') : t('vote.notOpen', { state: stateName(summary.state) });
    return page(summary.title, notice(why), h('a', { href: `#/results/${id}`, text: t('vote.seeResults') }));
  }
  const credential = h('input', { type: 'password', name: 'credential', autocomplete: 'off' });
  const form = h('form', { novalidate: true },
    field(t('vote.credential'), credential, { name: 'credential', hint: t('vote.credential.hint') }),
    h('button', { type: 'submit', text: t('vote.signIn') }));
  onSubmit(form, async () => {
    const token = credential.value.trim();
    if (!token) throw new ApiError(400, t('vote.error.noCredential'), 'credential');
    const me = await api('GET', `/api/elections/${id}/voters/me`, { token }).catch((error) => {
      throw error.status === 401 ? new ApiError(401, t('vote.error.notEligible'), 'credential') : error;
    });
    if (me.cast) return credentialUsed(summary);
    markBallot({ id, summary, contests, token, marks: {} });
  }, 'credential');
  page(summary.title, h('p', { text: t('vote.intro') }), form);
}

/** A credential that has cast its ballot: said plainly, with nothing left to press. */
function credentialUsed(summary) {
  currentStep = () => credentialUsed(summary);
  page(t('vote.used.title'),
    h('p', { class: 'alert', role: 'alert', id: 'credential-used', text: t('vote.used.text') }),
    h('p', {}, h('a', { href: `#/results/${summary.election_id}`, text: t('vote.seeResults') })));
}

/** An error handler: a refusal (409) because the credential has cast meanwhile, on another
 * tab or device, ends the flow on the plain "already voted" page; any other error is shown
 * where it happened. The server says which it is through `voters/me`, not through wording. */
function unlessUsed(vote) {
  return async (error) => {
    if (error.status !== 409) throw error;
    const me = await api('GET', `/api/elections/${vote.id}/voters/me`, { token: vote.token }).catch(() => null);
    if (!me?.cast) throw error;
    credentialUsed(vote.summary);
    return null;
  };
}

function markBallot(vote) {
  currentStep = () => markBallot(vote);
  const form = h('form', { novalidate: true, class: 'ballot' }, vote.contests.map((c) => contestChoices(c, vote.marks[c.id] || [])),
    h('button', { type: 'submit', text: t('vote.review') }));
  // The marks so far are kept as they change: a change of language redraws the ballot with them.
  const readMarks = () => {
    vote.marks = {};
    for (const c of vote.contests) {
      vote.marks[c.id] = [...form.querySelectorAll(`input[data-contest="${c.id}"]:checked`)].map((i) => i.value).filter(Boolean);
    }
  };
  form.addEventListener('change', readMarks);
  onSubmit(form, async () => {
    readMarks();
    for (const c of vote.contests) {
      if (vote.marks[c.id].length > c.votesAllowed) throw new ApiError(400, t('vote.error.tooMany', { n: num(c.votesAllowed) }), c.id);
    }
    reviewBallot(vote);
  });
  page(vote.summary.title, form);
}

/** One contest's choices; a one-choice contest also offers "leave blank", so a mark can be undone. */
function contestChoices(contest, marked) {
  const single = contest.votesAllowed === 1;
  const options = contest.selections.map((s) => ({ id: s.id, value: s.id, name: s.name }));
  if (single) options.push({ id: `${contest.id}--blank`, value: '', name: t('vote.leaveBlank'), blank: true });
  const errorId = `${contest.id}--error`;
  const inputs = options.map((o) => h('input', {
    type: single ? 'radio' : 'checkbox', name: contest.id, value: o.value, id: o.id, 'data-contest': contest.id,
    checked: o.blank ? marked.length === 0 : marked.includes(o.value), 'aria-describedby': errorId }));
  const limit = () => {
    if (single) return;
    const full = inputs.filter((i) => i.checked).length >= contest.votesAllowed;
    inputs.forEach((i) => { i.disabled = full && !i.checked; });
  };
  inputs.forEach((i) => i.addEventListener('change', limit));
  limit();
  return h('fieldset', { 'data-field': contest.id },
    h('legend', { lang: contest.nameLang, text: contest.name }),
    h('p', { class: 'hint', text: single ? t('vote.chooseOne') : t('vote.chooseUpTo', { n: num(contest.votesAllowed) }) }),
    options.map((o, k) => h('label', { class: o.blank ? 'choice blank' : 'choice', for: o.id }, inputs[k],
      o.blank ? o.name : h('span', { lang: contest.nameLang, text: o.name }))),
    h('p', { class: 'field-error', id: errorId, hidden: true }));
}

function choiceList(vote, marks) {
  return h('dl', { class: 'choices' }, vote.contests.flatMap((c) => {
    const chosen = c.selections.filter((s) => (marks[c.id] || []).includes(s.id)).map((s) => s.name);
    return [h('dt', { text: c.name }), h('dd', { text: chosen.length ? chosen.join(', ') : t('vote.noSelection') })];
  }));
}

function reviewBallot(vote) {
  currentStep = () => reviewBallot(vote);
  const form = h('form', {},
    choiceList(vote, vote.marks),
    h('button', { type: 'button', class: 'secondary', text: t('vote.change'), onclick: () => markBallot(vote) }),
    h('button', { type: 'submit', text: t('vote.encrypt') }));
  onSubmit(form, async () => {
    const encrypted = await api('POST', `/api/elections/${vote.id}/ballots/encrypt`, { body: { choices: vote.marks }, token: vote.token })
      .catch(unlessUsed(vote));
    if (encrypted) castOrChallenge(vote, encrypted);
  });
  page(t('vote.review.title'), form);
}

function castOrChallenge(vote, encrypted) {
  currentStep = () => castOrChallenge(vote, encrypted);
  const form = h('form', {},
    h('p', {}, rich('vote.decide.fingerprint', { code: h('code', { text: encrypted.crypto_hash.slice(0, 16) }) })),
    h('p', { class: 'hint', text: t('vote.decide.hint') }),
    h('button', { type: 'submit', name: 'action', value: 'cast', text: t('vote.cast') }),
    h('button', { type: 'submit', name: 'action', value: 'challenge', class: 'secondary', text: t('vote.challenge') }));
  onSubmit(form, async (button) => {
    const receipt = await api('POST', `/api/elections/${vote.id}/ballots/${encrypted.ballot_id}/${button.value}`, { token: vote.token })
      .catch(unlessUsed(vote));
    if (!receipt) return;
    if (button.value === 'cast') castReceipt(vote, receipt);
    else challengeReceipt(vote, receipt);
  });
  page(t('vote.decide.title'), form);
}

/** A tracking code in groups of four, each a separate word so that it wraps on a phone. */
function groupedCode(code, props = {}) {
  const groups = code.match(/.{1,4}/g) || [];
  return h('code', { ...props, class: `code-groups ${props.class || ''}`.trim(), 'data-code': code },
    groups.flatMap((g, k) => (k ? [' ', h('span', { text: g })] : [h('span', { text: g })])));
}

function receiptText(vote, receipt, castAt) {
  const grouped = (receipt.tracking_code.match(/.{1,4}/g) || []).join(' ');
  return [
    t('vote.receipt.heading'), '',
    t('vote.receipt.election', { title: `${vote.summary.title} (${vote.id})` }),
    t('vote.receipt.codeLine', { code: grouped }),
    t('vote.receipt.castAt', { time: castAt.toISOString() }),
    t('vote.receipt.checkAt', { url: `${location.origin}/#/results/${vote.id}` }), '',
    t('vote.receipt.keep'), '',
  ].join('\n');
}

/** Copies the code: the Clipboard API where the page may use it, else the selection. */
async function copyCode(codeEl, status) {
  try {
    await navigator.clipboard.writeText(codeEl.dataset.code);
    status.textContent = t('vote.receipt.copied');
  } catch (error) {
    const range = document.createRange();
    range.selectNodeContents(codeEl);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    status.textContent = document.execCommand?.('copy') ? t('vote.receipt.copied') : t('vote.receipt.copyFailed');
  }
}

function castReceipt(vote, receipt, castAt = new Date()) {
  currentStep = () => castReceipt(vote, receipt, castAt);
  const code = groupedCode(receipt.tracking_code, { id: 'tracking-code', class: 'code-big' });
  const copied = h('p', { class: 'hint', role: 'status', id: 'copy-status' });
  page(t('vote.receipt.title'),
    notice(t('vote.receipt.thanks')),
    h('section', { class: 'receipt card', 'aria-labelledby': 'receipt-code-label' },
      h('p', { class: 'print-only', text: t('vote.receipt.heading') }),
      h('p', { class: 'print-only', text: t('vote.receipt.election', { title: vote.summary.title }) }),
      h('p', { id: 'receipt-code-label' }, h('strong', { text: t('vote.receipt.code') })),
      code,
      h('p', { class: 'hint', text: t('vote.receipt.keep') }),
      h('p', { class: 'print-only', text: t('vote.receipt.castAt', { time: castAt.toLocaleString(lang, { dateStyle: 'long', timeStyle: 'long' }) }) }),
      h('p', { class: 'print-only', text: t('vote.receipt.checkAt', { url: `${location.origin}/#/results/${vote.id}` }) })),
    h('div', { class: 'receipt-actions no-print' },
      h('button', { type: 'button', class: 'secondary', text: t('vote.receipt.copy'), onclick: () => copyCode(code, copied) }),
      h('button', { type: 'button', class: 'secondary', text: t('vote.receipt.download'),
        onclick: () => download(`amarvote-receipt-${receipt.tracking_code.slice(0, 8)}.txt`, receiptText(vote, receipt, castAt), 'text/plain;charset=utf-8') }),
      h('button', { type: 'button', class: 'secondary', text: t('vote.receipt.print'), onclick: () => window.print() }),
      copied,
      h('a', { class: 'button', href: `#/results/${vote.id}`, text: t('vote.receipt.verify') })));
}

function challengeReceipt(vote, receipt) {
  currentStep = () => challengeReceipt(vote, receipt);
  const same = vote.contests.every((c) => JSON.stringify([...(receipt.revealed[c.id] || [])].sort()) === JSON.stringify([...(vote.marks[c.id] || [])].sort()));
  page(t('vote.challenged.title'),
    h('p', { class: same ? 'ok' : 'fail', id: 'challenge-verdict', text: same ? t('vote.challenged.same') : t('vote.challenged.differs') }),
    h('p', { text: t('vote.challenged.openedTo') }), choiceList(vote, receipt.revealed),
    h('p', {}, rich('vote.challenged.code', { code: groupedCode(receipt.tracking_code) })),
    h('button', { type: 'button', text: t('vote.challenged.again'), onclick: () => markBallot(vote) }));
}

// ---------- results and audit ----------

/** An answer the page can explain itself: not there yet (404, 409) becomes `key`'s message. */
const notYet = (key) => (error) => new ApiError(error.status, error.status === 404 || error.status === 409 ? t(key) : error.message);

async function resultsPage(id) {
  const [summary, manifest] = await Promise.all([api('GET', `/api/elections/${id}`), api('GET', `/api/elections/${id}/manifest`)]);
  const contests = ballotLayout(manifest);
  const results = await api('GET', `/api/elections/${id}/results`).catch(notYet('results.none'));
  const verification = await api('GET', `/api/elections/${id}/verification`).catch(notYet('results.report.none'));
  const { ballots } = await api('GET', `/api/elections/${id}/ballots`);
  page(t('results.title', { title: summary.title }),
    h('p', {}, rich('results.summary', {
      state: h('span', { class: 'tag', text: stateName(summary.state) }),
      cast: tn('results.cast', summary.cast_ballots), spoiled: tn('results.spoiled', summary.spoiled_ballots) })),
    results instanceof Error ? notice(results.message) : resultTables(contests, results),
    h('h2', { text: t('results.verifyMine') }), trackingForm(id),
    h('h2', { text: t('results.report') }),
    verification instanceof Error ? notice(verification.message) : verificationReport(verification),
    h('h2', { text: t('results.codes') }), codeList(ballots));
}

function resultTables(contests, results) {
  const votes = {};
  for (const c of results.contests) for (const s of c.selections) votes[s.selection_id] = s.votes;
  return h('div', { id: 'results' }, contests.map((c) => {
    const total = c.selections.reduce((n, s) => n + (votes[s.id] || 0), 0);
    return h('section', { class: 'card', 'data-contest': c.id },
      h('h2', { text: c.name }),
      h('table', {}, h('thead', {}, h('tr', {}, ['results.col.choice', 'results.col.votes', 'results.col.share'].map((k) => h('th', { scope: 'col', text: t(k) })))),
        h('tbody', {}, c.selections.map((s) => {
          const n = votes[s.id] || 0;
          const share = total ? (100 * n) / total : 0;
          return h('tr', { 'data-selection': s.id },
            h('td', { text: s.name }), h('td', { class: 'votes', 'data-votes': n, text: num(n) }),
            h('td', { class: 'share' }, percent(share), bar(share)));
        }))),
      h('p', { class: 'hint', text: tn('results.contestTotal', total) }));
  }));
}

/** A horizontal bar; its width set through the CSSOM, which the content policy allows. */
function bar(percent) {
  const fill = h('span');
  fill.style.width = `${percent}%`;
  return h('div', { class: 'bar', 'aria-hidden': 'true' }, fill);
}

function trackingForm(id) {
  const code = h('input', { type: 'text', name: 'code', autocomplete: 'off', spellcheck: 'false' });
  const out = h('div', { role: 'status' });
  const form = h('form', { novalidate: true },
    field(t('results.code'), code, { name: 'code', hint: t('results.code.hint') }), h('button', { type: 'submit', text: t('results.lookUp') }), out);
  onSubmit(form, async () => {
    out.replaceChildren();
    // Receipts show the code in groups of four: the spaces are not part of it.
    const typed = code.value.replace(/\s+/g, '');
    if (!typed) throw new ApiError(400, t('results.error.noCode'), 'code');
    const ballot = await api('GET', `/api/elections/${id}/tracking/${encodeURIComponent(typed)}`).catch((error) => {
      throw error.status === 404 || error.status === 400 ? new ApiError(error.status, t('results.error.unknownCode'), 'code') : error;
    });
    const fingerprint = ballot.crypto_hash.slice(0, 16);
    out.replaceChildren(notice(ballot.state === 'cast' ? t('results.found.cast', { fingerprint }) : t('results.found.spoiled', { fingerprint })));
  }, 'code');
  return form;
}

function verificationReport(report) {
  const checks = Object.entries(report.checks || {});
  return h('div', { id: 'verification' },
    h('p', { class: report.failures.length ? 'fail' : 'ok',
      text: report.failures.length
        ? tn('results.report.failures', report.failures.length, { checked: num(report.checked) })
        : tn('results.report.ok', report.checked) }),
    scrollable(t('results.report'), h('table', {},
      h('thead', {}, h('tr', {}, ['results.col.check', 'results.col.passed', 'results.col.failed'].map((k) => h('th', { scope: 'col', text: t(k) })))),
      h('tbody', {}, checks.map(([name, c]) => h('tr', {}, h('td', {}, h('code', { lang: 'en', text: name })), h('td', { text: num(c.passed) }), h('td', { text: num(c.failed) })))))),
    report.failures.length ? h('ul', { lang: 'en' }, report.failures.slice(0, 50).map((f) => h('li', { text: f }))) : null);
}

function codeList(ballots) {
  if (!ballots.length) return h('p', { text: t('results.noBallots') });
  return scrollable(t('results.codes'), h('table', { id: 'codes' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: t('results.code') }), h('th', { scope: 'col', text: t('results.col.state') }))),
    h('tbody', {}, ballots.map((b) => h('tr', {}, h('td', {}, groupedCode(b.tracking_code)), h('td', { text: t(`ballot.${b.state}`) }))))));
}

// ---------- referendum ----------

/** Digits typed on a Bengali, Devanagari, Arabic-Indic or full-width keyboard, as the ASCII
 * digits the API takes. */
function asciiDigits(text) {
  const zeros = [0x0660, 0x06f0, 0x0966, 0x09e6, 0xff10];
  return text.replace(/\p{Nd}/gu, (d) => {
    const zero = zeros.find((z) => d.codePointAt(0) >= z && d.codePointAt(0) <= z + 9);
    return zero === undefined ? d : String(d.codePointAt(0) - zero);
  });
}

/** The referendum API names the field at fault; the voter reads why in their language. */
const REFERENDUM_FIELD_ERRORS = { nas: 'ref.error.nas', code: 'ref.error.code', law_id: 'ref.error.law', vote: 'ref.error.answer' };

async function referendumPage() {
  const { laws } = await api('GET', '/api/v1/laws');
  const law = h('select', { name: 'law_id' }, laws.map((l) => h('option', { value: l.law_id, text: l.title ? `${l.title} (${l.law_id})` : l.law_id })));
  const choice = (value, key) => h('label', { class: 'choice' }, h('input', { type: 'radio', name: 'vote', value, 'aria-describedby': 'vote-error' }), t(key));
  const form = h('form', { novalidate: true },
    field(t('ref.nas'), h('input', { type: 'text', name: 'nas', inputmode: 'numeric', autocomplete: 'off' }), { name: 'nas' }),
    field(t('ref.code'), h('input', { type: 'text', name: 'code', autocomplete: 'off', spellcheck: 'false' }), { name: 'code', hint: t('ref.code.hint') }),
    field(t('ref.law'), law, { name: 'law_id' }),
    h('fieldset', { 'data-field': 'vote' }, h('legend', { text: t('ref.answer') }), choice('oui', 'ref.oui'), choice('non', 'ref.non'),
      h('p', { class: 'field-error', id: 'vote-error', hidden: true })),
    h('button', { type: 'submit', text: t('ref.submit') }));
  onSubmit(form, async () => {
    const body = { nas: asciiDigits(form.elements.nas.value.trim()), code: form.elements.code.value.trim(), law_id: law.value,
      vote: form.querySelector('input[name=vote]:checked')?.value };
    if (!body.vote) throw new ApiError(400, t('ref.error.answer'), 'vote');
    const answer = await api('POST', '/api/v1/vote', { body }).catch((error) => {
      const key = error.status === 400 && REFERENDUM_FIELD_ERRORS[error.field];
      throw key ? new ApiError(400, t(key), error.field) : error;
    });
    location.hash = `#/referendum/outcome/${answer.request_id}`;
  });
  const totals = h('div', { id: 'law-totals' });
  const refresh = async () => redraw(totals, (await api('GET', '/api/v1/laws')).laws, lawTotals);
  await refresh();
  every(2000, () => refresh().catch(() => {}));
  page(t('ref.title'), laws.length ? form : notice(t('ref.noLaws')), h('h2', { text: t('ref.live') }), totals);
}

function lawTotals(laws) {
  if (!laws.length) return h('p', { text: t('ref.noLaws') });
  return scrollable(t('ref.live'), h('table', {},
    h('thead', {}, h('tr', {}, ['ref.col.law', 'ref.col.oui', 'ref.col.non', 'ref.col.share'].map((k) => h('th', { scope: 'col', text: t(k) })))),
    h('tbody', {}, laws.map((l) => {
      const share = l.oui + l.non ? (100 * l.oui) / (l.oui + l.non) : 0;
      return h('tr', { 'data-law': l.law_id }, h('td', { text: l.title || l.law_id }),
        h('td', { class: 'oui', 'data-votes': l.oui, text: num(l.oui) }), h('td', { class: 'non', 'data-votes': l.non, text: num(l.non) }),
        h('td', {}, percent(share), bar(share)));
    }))));
}

async function referendumOutcomePage(requestId) {
  const out = h('div', { id: 'outcome', role: 'status', 'aria-live': 'polite' }, h('p', { text: t('ref.outcome.checking') }));
  page(t('ref.outcome.title'), out, h('p', { class: 'hint' }, rich('ref.outcome.request', { id: h('code', { text: requestId }) })));
  const show = (status, text) => {
    out.replaceChildren(h('p', { class: status === 'accepted' ? 'notice' : 'alert', 'data-status': status, text }));
    stopPageWork();
  };
  const check = async () => {
    const status = await api('GET', `/api/v1/vote/${requestId}`).catch((error) => {
      if (error.status === 404) return { status: 'unknown' };
      throw error;
    });
    if (status.status === 'pending') return;
    if (status.status === 'duplicate') return show('duplicate', tn('ref.status.duplicate', status.attempts));
    if (status.status === 'unknown') return show('unknown', t('ref.outcome.unknown'));
    return show(status.status, t(`ref.status.${status.status}`));
  };
  every(500, () => check().catch((e) => out.replaceChildren(alertBox(e.message))));
  await check();
}

async function start() {
  await useLanguage(preferredLanguage()).catch(() => useLanguage('en'));
  languagePicker();
  // The skip link focuses the content; following "#main" would leave the page's route.
  document.querySelector('.skip').addEventListener('click', (event) => { event.preventDefault(); main.focus(); });
  window.addEventListener('hashchange', route);
  await route();
}

start();
