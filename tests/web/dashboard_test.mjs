// The dashboard in a real browser against a real taskd.
//
//   TASKD=build/server/taskd TASKCTL=build/client/taskctl node dashboard_test.mjs
//
// Environment:
//   TASKD, TASKCTL  the binaries (required)
//   WORKDIR         scratch directory for the database and logs (default: a
//                   new one under $TMPDIR, removed after a pass)
//   ARTIFACTS       where screenshots go (default: ./artifacts beside this file)
//   CHROMIUM        the browser (default /usr/bin/chromium)
//   BUDGET_MS       how soon a change must show on the page (default 1000)
//   WEB_DIR         serve the page's files from this directory instead of
//                   the copy embedded in taskd: for trying page changes
//                   without rebuilding taskd (streams and calls still go to
//                   taskd)
//
// It starts taskd itself on free ports, changes tasks with taskctl (native
// gRPC, as an executor would), and reads the page through its data-testid
// attributes, comparing it with what taskd answers over HTTP. In order:
//   1-5  live tiles and table, tile filters, a bad filter, the side panel;
//   6-7  taskd stopped (SIGTERM) and started again on the same ports and
//        database, changes made while the page reconnects: all of them shown;
//   8    the browser offline while taskd trims the history it would resume
//        from: the page lists again (REVISION_COMPACTED);
//   9    a taskd with tokens: the page says it needs one, and goes live with
//        one typed into its token box.
// Exit status 0 on pass, 1 with the failed check on stderr (and a
// screenshot, NN-failure.png).

import { spawn, execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TASKD = process.env.TASKD;
const TASKCTL = process.env.TASKCTL;
const ARTIFACTS = path.resolve(process.env.ARTIFACTS || path.join(HERE, 'artifacts'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const BUDGET_MS = Number(process.env.BUDGET_MS || 1000);
const WEB_DIR = process.env.WEB_DIR ? path.resolve(process.env.WEB_DIR) : '';
// Generous bounds for things outside the page's control: a taskd restart,
// the browser's own reconnect delay (Chromium waits 3 s by default).
const RECONNECT_MS = 20000;

const ownWorkdir = !process.env.WORKDIR;
const WORKDIR = process.env.WORKDIR || fs.mkdtempSync(path.join(os.tmpdir(), 'taskd-web-'));
fs.mkdirSync(WORKDIR, { recursive: true });

// ---- Small helpers ----------------------------------------------------------

class TestFailure extends Error {}

function fail(message) {
  throw new TestFailure(message);
}

function log(message) {
  const t = new Date().toISOString().slice(11, 23);
  console.log(`[${t}] ${message}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls `probe` until it returns a truthy value; fails after `timeoutMs`
// naming what it waited for and the last value seen.
async function waitFor(what, probe, timeoutMs, { every = 20 } = {}) {
  const start = Date.now();
  let last;
  for (;;) {
    last = await probe();
    if (last && last.ok !== false) return { value: last, ms: Date.now() - start };
    if (Date.now() - start > timeoutMs) {
      fail(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${
        JSON.stringify(last?.seen ?? last, null, 1)}`);
    }
    await sleep(every);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// ---- taskd and taskctl ------------------------------------------------------

// The taskd the helpers talk to: its ports, database, and the token that
// taskctl and api() send (empty: taskd runs open).
const server = { grpc: 0, http: 0, db: '', token: '' };
let taskd = null; // {process, log, exited}
let taskdStarts = 0;
let taskdFlags = '';

function taskdHelp() {
  return new Promise((resolve) => {
    execFile(TASKD, ['--help'], (error, stdout, stderr) => resolve(`${stdout}${stderr}`));
  });
}

async function startTaskd(extraArgs = []) {
  taskdStarts++;
  const logPath = path.join(WORKDIR, `taskd-${taskdStarts}.log`);
  const args = [
    `--listen=127.0.0.1:${server.grpc}`,
    `--http_listen=127.0.0.1:${server.http}`,
    `--db=${server.db}`,
    ...extraArgs,
  ];
  // Leases that expire on their own would move tasks behind the test's back.
  if (taskdFlags.includes('--default_ack_timeout')) args.push('--default_ack_timeout=0');
  // Record every heartbeat's progress, not only after 5 s of quiet.
  if (taskdFlags.includes('--progress_interval')) args.push('--progress_interval=0s');
  const out = fs.openSync(logPath, 'a');
  const child = spawn(TASKD, args, { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const entry = { process: child, log: logPath, exited: null };
  child.on('exit', (code, signal) => { entry.exited = { code, signal }; });
  taskd = entry;
  log(`taskd #${taskdStarts}: ${TASKD} ${args.join(' ')}`);
  await waitFor('taskd to answer HTTP', async () => {
    if (entry.exited) fail(`taskd exited at start (${JSON.stringify(entry.exited)}):\n${tail(logPath)}`);
    try {
      await api('ListTasks', { pageSize: 1 });
      return true;
    } catch {
      return false;
    }
  }, 15000, { every: 50 });
}

async function stopTaskd() {
  const entry = taskd;
  entry.process.kill('SIGTERM');
  await waitFor('taskd to exit after SIGTERM', () => entry.exited, 20000, { every: 50 });
  if (entry.exited.code !== 0) {
    fail(`taskd exited with ${JSON.stringify(entry.exited)} after SIGTERM:\n${tail(entry.log)}`);
  }
  taskd = null;
}

function tail(file, lines = 30) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// taskctl -o json ...; resolves to the printed task.
function ctl(...args) {
  const argv = [`--server=127.0.0.1:${server.grpc}`, '-o', 'json', ...args];
  if (server.token) argv.push(`--token=${server.token}`);
  return new Promise((resolve, reject) => {
    execFile(TASKCTL, argv, { timeout: 20000 }, (error, stdout, stderr) => {
      if (error) {
        reject(new TestFailure(`taskctl ${args.join(' ')} failed: ${stderr || error.message}`));
        return;
      }
      try {
        resolve(stdout.trim() ? JSON.parse(stdout) : {});
      } catch {
        reject(new TestFailure(`taskctl ${args.join(' ')} printed no JSON: ${stdout}`));
      }
    });
  });
}

// The HTTP API as the page sees it, for the truth to compare the page with.
async function api(method, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (server.token) headers.Authorization = `Bearer ${server.token}`;
  const response = await fetch(`http://127.0.0.1:${server.http}/tasks.v1.TaskService/${method}`, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new TestFailure(`${method}: HTTP ${response.status} ${JSON.stringify(json)}`);
  return json;
}

// The first event of a stream (its text), e.g. a `failed` one.
async function firstEvent(pathAndQuery) {
  const abort = new AbortController();
  const response = await fetch(`http://127.0.0.1:${server.http}${pathAndQuery}`, { signal: abort.signal });
  const decoder = new TextDecoder();
  let text = '';
  try {
    for await (const chunk of response.body) {
      text += decoder.decode(chunk, { stream: true });
      const event = text.split('\n\n').find((block) => /^event:/m.test(block));
      if (event) return event;
    }
  } finally {
    abort.abort();
  }
  return text;
}

// What taskd says the tiles should show.
async function expectedCounts() {
  const answer = await api('CountTasks', { groupBy: ['state', 'result_code'] });
  const counts = { enqueued: 0, assigned: 0, started: 0, paused: 0, completed: 0,
                   ok: 0, error: 0, warning: 0, cancelled: 0, abandoned: 0, timedout: 0, total: 0 };
  for (const group of answer.groups || []) {
    const [state, result] = group.values || [];
    const n = Number(group.count || 0);
    counts.total += n;
    if (state in counts) counts[state] += n;
    if (state === 'completed' && result) counts[result] += n;
  }
  return { counts, revision: Number(answer.revision || 0) };
}

// ---- The page ---------------------------------------------------------------

// Everything the checks read, in one round trip.
function readPage(page) {
  return page.evaluate(() => {
    const q = (id) => document.querySelector(`[data-testid="${id}"]`);
    const count = (id) => {
      const n = q(id);
      return n && n.dataset.count !== undefined ? Number(n.dataset.count) : null;
    };
    const panel = q('task-panel');
    return {
      connection: q('connection').dataset.state,
      revision: Number(q('last-revision').dataset.revision || 0),
      counts: {
        enqueued: count('count-enqueued'), assigned: count('count-assigned'),
        started: count('count-started'), paused: count('count-paused'),
        completed: count('count-completed'), ok: count('count-result-ok'),
        error: count('count-result-error'), warning: count('count-result-warning'),
        cancelled: count('count-result-cancelled'), abandoned: count('count-result-abandoned'),
        timedout: count('count-result-timedout'), total: count('count-total'),
      },
      rows: [...document.querySelectorAll('[data-testid="task-row"]')].map((tr) => ({
        id: tr.dataset.id, state: tr.dataset.state, result: tr.dataset.result,
        revision: Number(tr.dataset.revision),
        progress: tr.querySelector('[data-testid="cell-progress"]').textContent,
      })),
      filter: q('filter-input').value,
      filterError: q('filter-error').textContent,
      activeTiles: [...document.querySelectorAll('.tile.active')].map((t) => t.dataset.testid),
      panel: panel.hidden ? null : {
        id: panel.dataset.id,
        title: q('panel-title').textContent,
        state: q('panel-state').textContent,
        detailId: panel.querySelector('[data-field="id"]')?.textContent,
        history: [...document.querySelectorAll('[data-testid="history-item"]')].map((li) => ({
          revision: Number(li.dataset.revision), type: li.dataset.type, text: li.textContent })),
        error: q('panel-error').hidden ? '' : q('panel-error').textContent,
      },
    };
  });
}

const sameCounts = (a, b) => Object.keys(b).every((k) => a[k] === b[k]);

// ---- The test ---------------------------------------------------------------

let browser = null;
let page = null;
let shots = 0;
const pageErrors = [];

async function screenshot(name) {
  if (!page) return;
  shots++;
  const file = path.join(ARTIFACTS, `${String(shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

async function main() {
  if (!TASKD || !TASKCTL) fail('set TASKD and TASKCTL to the taskd and taskctl binaries');
  for (const bin of [TASKD, TASKCTL]) {
    if (!fs.existsSync(bin)) fail(`${bin} does not exist`);
  }
  if (WEB_DIR && !fs.existsSync(path.join(WEB_DIR, 'index.html'))) fail(`WEB_DIR ${WEB_DIR} has no index.html`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of fs.readdirSync(ARTIFACTS)) if (f.endsWith('.png')) fs.rmSync(path.join(ARTIFACTS, f));
  taskdFlags = await taskdHelp();
  if (!taskdFlags.includes('http_listen')) fail(`${TASKD} --help mentions no --http_listen flag`);
  server.grpc = await freePort();
  server.http = await freePort();
  server.db = path.join(WORKDIR, 'taskd.db');
  log(`workdir ${WORKDIR}, artifacts ${ARTIFACTS}`);

  await startTaskd();
  const base = `http://127.0.0.1:${server.http}`;

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  if (WEB_DIR) {
    log(`serving the page from ${WEB_DIR}, not from taskd's embedded copy`);
    const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };
    const fileFor = (url) => {
      if (url.hostname !== '127.0.0.1') return null;
      const name = url.pathname === '/' ? 'index.html' : url.pathname.slice(1);
      const file = path.join(WEB_DIR, name);
      return /^[\w.-]+$/.test(name) && types[path.extname(name)] && fs.existsSync(file) ? file : null;
    };
    await context.route((url) => fileFor(url) !== null, (route) => {
      const file = fileFor(new URL(route.request().url()));
      route.fulfill({ path: file, contentType: types[path.extname(file)] });
    });
  }
  page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !/ERR_CONNECTION_REFUSED|Failed to load resource/.test(message.text())) {
      pageErrors.push(`console error: ${message.text()}`);
    }
  });
  const foreign = [];
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.protocol !== 'data:' && url.hostname !== '127.0.0.1') foreign.push(request.url());
  });

  // -- 1. Loads, connects, shows an empty store.
  let r;
  await page.goto(`${base}/`);
  r = await waitFor('the connection indicator to say live', async () => {
    const s = await readPage(page);
    return { ok: s.connection === 'live' && s.counts.total === 0, seen: s };
  }, 5000);
  if (foreign.length) fail(`the page requested other origins (it must work offline): ${foreign.join(', ')}`);
  log(`page is live on an empty store ${r.ms} ms after loading`);

  // -- 2. A new task shows in the tiles and the table within the budget.
  const a = await ctl('create', '--type=backup', '--priority=high');
  r = await waitFor(`task ${a.id} in the enqueued tile and the table`, async () => {
    const s = await readPage(page);
    return { ok: s.counts.enqueued === 1 && s.counts.total === 1 && s.rows.some((row) => row.id === a.id),
             seen: s };
  }, BUDGET_MS);
  log(`created ${a.id}: on the page after ${r.ms} ms`);

  // Move tasks through their life: b started with progress, c ok, d error.
  const tasks = { a };
  const leases = {};
  const revisions = {}; // id -> revisions of its changes, as taskctl saw them
  const note = (task) => { (revisions[task.id] ||= []).push(Number(task.revision)); return task; };
  note(a);
  for (const name of ['b', 'c', 'd']) {
    tasks[name] = note(await ctl('create', `--type=${name === 'b' ? 'replication' : 'backup'}`));
  }
  for (const name of ['b', 'c', 'd']) {
    const assigned = note(await ctl('assign', tasks[name].id, '--executor=agent-7'));
    leases[name] = assigned.leaseToken;
    note(await ctl('start', tasks[name].id, `--lease=${leases[name]}`));
  }
  await ctl('heartbeat', tasks.b.id, `--lease=${leases.b}`, '--progress=3/10');
  note(await ctl('get', tasks.b.id)); // the heartbeat's change, if it made one
  note(await ctl('complete', tasks.c.id, `--lease=${leases.c}`, '--result=ok'));
  note(await ctl('complete', tasks.d.id, `--lease=${leases.d}`, '--result=error'));
  r = await waitFor('the tiles and rows to match taskd after moving tasks', async () => {
    const s = await readPage(page);
    const expected = { enqueued: 1, assigned: 0, started: 1, paused: 0, completed: 2, ok: 1, error: 1, total: 4 };
    const states = Object.fromEntries(s.rows.map((row) => [row.id, `${row.state}/${row.result}`]));
    const progress = s.rows.find((row) => row.id === tasks.b.id)?.progress;
    return {
      ok: sameCounts(s.counts, expected) && states[tasks.b.id] === 'started/' && progress === '3/10' &&
          states[tasks.c.id] === 'completed/ok' && states[tasks.d.id] === 'completed/error',
      seen: { counts: s.counts, states, progress },
    };
  }, BUDGET_MS);
  log(`life-cycle moves on the page after ${r.ms} ms`);
  // A deleted task leaves the table and the tiles.
  const doomed = await ctl('create', '--type=doomed');
  await waitFor('a task about to be deleted to show', async () => {
    const s = await readPage(page);
    return { ok: s.rows[0]?.id === doomed.id && s.counts.total === 5, seen: s.rows[0] };
  }, BUDGET_MS);
  await ctl('delete', doomed.id);
  r = await waitFor('a deleted task to leave the table and the tiles', async () => {
    const s = await readPage(page);
    return { ok: !s.rows.some((row) => row.id === doomed.id) && s.counts.total === 4 && s.counts.enqueued === 1,
             seen: { rows: s.rows.length, counts: s.counts } };
  }, BUDGET_MS);
  log(`deleted task gone from the page after ${r.ms} ms`);
  const truth = await expectedCounts();
  const shown = (await readPage(page)).counts;
  if (!sameCounts(shown, truth.counts)) fail(`tiles ${JSON.stringify(shown)} != CountTasks ${JSON.stringify(truth.counts)}`);
  await waitFor('the chart legend to count the new tasks', async () => {
    const v = await page.textContent('[data-testid="rate-created"]');
    return { ok: Number(v) > 0, seen: v };
  }, 3000);
  await screenshot('live');

  // -- 3. A state tile filters the table; tasks enter and leave it live.
  await page.click('[data-testid="tile-started"]');
  r = await waitFor('the started tile to filter the table', async () => {
    const s = await readPage(page);
    return { ok: s.filter === 'state = "started"' && s.activeTiles.includes('tile-started') &&
                 s.rows.length === 1 && s.rows[0].id === tasks.b.id,
             seen: s };
  }, BUDGET_MS);
  log(`started tile: table filtered after ${r.ms} ms`);
  tasks.e = note(await ctl('create', '--type=archive'));
  leases.e = note(await ctl('assign', tasks.e.id, '--executor=agent-8')).leaseToken;
  note(await ctl('start', tasks.e.id, `--lease=${leases.e}`));
  r = await waitFor('a task that starts to enter the filtered table', async () => {
    const s = await readPage(page);
    const ids = s.rows.map((row) => row.id).sort();
    return { ok: ids.join() === [tasks.b.id, tasks.e.id].sort().join(), seen: s.rows };
  }, BUDGET_MS);
  log(`task entering the filter shown after ${r.ms} ms`);
  note(await ctl('pause', tasks.b.id, `--lease=${leases.b}`));
  // Leaving the filter is noticed by the page's batched re-check (500 ms).
  r = await waitFor('a paused task to leave the "started" table', async () => {
    const s = await readPage(page);
    return { ok: s.rows.length === 1 && s.rows[0].id === tasks.e.id, seen: s.rows };
  }, BUDGET_MS + 1000);
  log(`task leaving the filter dropped after ${r.ms} ms`);
  await screenshot('filter-started');
  await page.click('[data-testid="tile-started"]');
  await waitFor('a second click on the tile to clear the filter', async () => {
    const s = await readPage(page);
    return { ok: s.filter === '' && s.activeTiles.length === 0 && s.rows.length === 5, seen: s };
  }, BUDGET_MS);

  await page.click('[data-testid="tile-result-error"]');
  await waitFor('the error tile to show the failed task only', async () => {
    const s = await readPage(page);
    return { ok: s.filter === 'state = "completed" AND result_code = "error"' &&
                 s.rows.length === 1 && s.rows[0].id === tasks.d.id, seen: s };
  }, BUDGET_MS);
  await page.click('[data-testid="tile-result-error"]');
  await waitFor('the filter to clear', async () => {
    const s = await readPage(page);
    return { ok: s.filter === '' && s.rows.length === 5, seen: s };
  }, BUDGET_MS);

  // -- 4. A bad filter shows taskd's message, naming the column; the table stays.
  await page.fill('[data-testid="filter-input"]', 'stat = "started"');
  await page.press('[data-testid="filter-input"]', 'Enter');
  r = await waitFor('the filter error next to the box', async () => {
    const s = await readPage(page);
    return { ok: /column/.test(s.filterError) && /stat/.test(s.filterError) && s.rows.length === 5, seen: s };
  }, BUDGET_MS);
  log(`bad filter: "${r.value.seen.filterError}"`);
  await screenshot('bad-filter');
  await page.fill('[data-testid="filter-input"]', 'priority >= "aboveNormal"');
  await page.press('[data-testid="filter-input"]', 'Enter');
  await waitFor('a good filter to replace the error', async () => {
    const s = await readPage(page);
    return { ok: s.filterError === '' && s.rows.length === 1 && s.rows[0].id === a.id, seen: s };
  }, BUDGET_MS);
  await page.click('[data-testid="filter-clear"]');
  await waitFor('Clear to show every task', async () => {
    const s = await readPage(page);
    return { ok: s.filter === '' && s.rows.length === 5, seen: s };
  }, BUDGET_MS);

  // -- 5. A row opens the task's detail and its whole history.
  await page.click(`[data-testid="task-row"][data-id="${tasks.b.id}"]`);
  const expectedB = [...new Set(revisions[tasks.b.id])].sort((x, y) => x - y);
  r = await waitFor(`the panel with task b's ${expectedB.length} changes`, async () => {
    const s = await readPage(page);
    const got = (s.panel?.history || []).map((h) => h.revision).sort((x, y) => x - y);
    return { ok: s.panel && s.panel.id === tasks.b.id && s.panel.detailId === tasks.b.id &&
                 got.join() === expectedB.join() && /paused/.test(s.panel.state),
             seen: { panel: s.panel, expected: expectedB } };
  }, BUDGET_MS + 1000);
  const history = r.value.seen.panel.history;
  if (history.at(-1).type !== 'CREATED') fail(`oldest history entry is not CREATED: ${JSON.stringify(history)}`);
  if (!history.some((h) => /started → paused/.test(h.text))) {
    fail(`history shows no "started → paused" transition: ${JSON.stringify(history)}`);
  }
  log(`panel: ${history.length} changes of task b, newest first`);
  await screenshot('panel');

  // Keep the panel open on e, which will complete while taskd restarts.
  await page.click(`[data-testid="task-row"][data-id="${tasks.e.id}"]`);
  await waitFor('the panel to switch to task e', async () => {
    const s = await readPage(page);
    return { ok: s.panel?.id === tasks.e.id && s.panel.history.length === revisions[tasks.e.id].length,
             seen: s.panel };
  }, BUDGET_MS + 1000);

  // -- 6. taskd restarts; changes made meanwhile all reach the page.
  await stopTaskd();
  await waitFor('the indicator to leave live when taskd stops', async () => {
    const s = await readPage(page);
    return { ok: s.connection !== 'live', seen: s.connection };
  }, 5000);
  await screenshot('reconnecting');
  await startTaskd();
  const restartedAt = Date.now();
  tasks.f = note(await ctl('create', '--type=backup', '--priority=low'));
  tasks.g = note(await ctl('create', '--type=backup'));
  leases.f = note(await ctl('assign', tasks.f.id, '--executor=agent-9')).leaseToken;
  note(await ctl('start', tasks.f.id, `--lease=${leases.f}`));
  note(await ctl('complete', tasks.e.id, `--lease=${leases.e}`, '--result=warning'));
  note(await ctl('cancel', tasks.g.id));
  note(await ctl('resume', tasks.b.id, `--lease=${leases.b}`));
  log('made 7 changes after the restart');

  r = await waitFor('the page to be live again and show every change', async () => {
    const s = await readPage(page);
    const want = await expectedCounts();
    const list = await api('ListTasks', { pageSize: 100 });
    const rows = new Map(s.rows.map((row) => [row.id, row]));
    const missing = (list.tasks || []).filter((t) => rows.get(t.id)?.revision !== Number(t.revision))
      .map((t) => `${t.id}@${t.revision}`);
    return {
      ok: s.connection === 'live' && sameCounts(s.counts, want.counts) && missing.length === 0 &&
          s.revision >= want.revision,
      seen: { connection: s.connection, counts: s.counts, want: want.counts, missing,
              pageRevision: s.revision, storeRevision: want.revision },
    };
  }, RECONNECT_MS, { every: 100 });
  log(`after the restart the page caught up in ${Date.now() - restartedAt} ms`);

  r = await waitFor("task e's completion in its open history panel", async () => {
    const s = await readPage(page);
    const got = (s.panel?.history || []).map((h) => h.revision).sort((x, y) => x - y);
    const want = [...new Set(revisions[tasks.e.id])].sort((x, y) => x - y);
    return { ok: got.join() === want.join() && /completed/.test(s.panel.state) && !s.panel.error,
             seen: { got, want, panel: s.panel } };
  }, BUDGET_MS + 1000);
  await screenshot('resumed');

  // -- 7. And it is still live: one more change, within the budget.
  const h = await ctl('create', '--type=verify', '--priority=aboveNormal');
  r = await waitFor('a task created after the reconnect', async () => {
    const s = await readPage(page);
    return { ok: s.rows[0]?.id === h.id && s.counts.total === 8, seen: { top: s.rows[0], counts: s.counts } };
  }, BUDGET_MS);
  log(`created after the restart: on the page after ${r.ms} ms`);
  await page.keyboard.press('Escape');
  await waitFor('Escape to close the panel', async () => ({ ok: (await readPage(page)).panel === null }), BUDGET_MS);
  await screenshot('final');

  // -- 8. The history the page would resume from is trimmed while it is
  // away: it lists again (REVISION_COMPACTED), and the open panel's history
  // goes on from the oldest change kept.
  await page.click(`[data-testid="task-row"][data-id="${a.id}"]`);
  await waitFor('the panel on task a', async () => {
    const s = await readPage(page);
    return { ok: s.panel?.id === a.id && s.panel.history.length === revisions[a.id].length, seen: s.panel };
  }, BUDGET_MS + 1000);
  const away = (await readPage(page)).revision;
  await context.setOffline(true);
  await stopTaskd();
  await startTaskd(['--history_max_changes=50']);
  const bulk = 1100; // taskd trims its history every 1024 changes
  for (let i = 0; i < bulk; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, bulk - i) },
                                 (_, j) => api('CreateTask', { task: { type: `bulk-${(i + j) % 7}` } })));
  }
  const gone = await firstEvent(`/v1/tasks:watch?start_revision=${away + 1}`);
  if (!/REVISION_COMPACTED/.test(gone)) fail(`taskd did not trim its history: watching from ${away + 1} gave ${gone}`);
  log(`created ${bulk} tasks while the page was offline; taskd trimmed the history after revision ${away}`);
  await context.setOffline(false);
  r = await waitFor('the page to list again and show the newest tasks', async () => {
    const s = await readPage(page);
    const want = await expectedCounts();
    const newest = await api('ListTasks', { pageSize: 100, orderBy: 'updatedAt desc' });
    const shown = new Set(s.rows.map((row) => row.id));
    const missing = (newest.tasks || []).filter((t) => !shown.has(t.id)).length;
    return {
      ok: s.connection === 'live' && sameCounts(s.counts, want.counts) && s.rows.length === 100 && missing === 0 &&
          /trimmed/.test(await page.textContent('[data-testid="history-note"]')) && !s.panel?.error,
      seen: { connection: s.connection, counts: s.counts, want: want.counts, rows: s.rows.length, missing,
              panel: s.panel && { id: s.panel.id, error: s.panel.error, history: s.panel.history.length } },
    };
  }, RECONNECT_MS, { every: 100 });
  log(`back online: listed again, 100 newest rows, tiles equal CountTasks (${r.ms} ms)`);
  const cancelled = note(await ctl('cancel', a.id));
  const afterCancel = (await expectedCounts()).counts;
  await waitFor("task a's cancellation in the tiles, the table and its history", async () => {
    const s = await readPage(page);
    return { ok: s.rows[0]?.id === a.id && s.rows[0].result === 'cancelled' &&
                 sameCounts(s.counts, afterCancel) &&
                 s.panel?.history.some((h) => h.revision === Number(cancelled.revision)),
             seen: { top: s.rows[0], counts: s.counts, want: afterCancel, panel: s.panel } };
  }, BUDGET_MS);
  await screenshot('trimmed');

  // -- 9. A taskd with tokens: without one the page says why; with the token
  // typed into the box it goes live, and keeps it across a reload.
  await stopTaskd();
  const viewer = `viewer-${crypto.randomUUID()}`;
  const admin = `admin-${crypto.randomUUID()}`;
  const sha = (t) => crypto.createHash('sha256').update(t).digest('hex');
  const tokens = path.join(WORKDIR, 'tokens');
  fs.writeFileSync(tokens, `${sha(viewer)} * viewer\n${sha(admin)} * admin\n`);
  Object.assign(server, { grpc: await freePort(), http: await freePort(),
                          db: path.join(WORKDIR, 'auth.db'), token: admin });
  await startTaskd([`--auth_tokens=${tokens}`]);
  const authBase = `http://127.0.0.1:${server.http}`;
  await page.goto(`${authBase}/`);
  r = await waitFor('the page to say it needs a token', async () => {
    const s = await readPage(page);
    const banner = await page.textContent('[data-testid="banner"]');
    return { ok: s.connection === 'offline' && /unauthenticated/.test(banner), seen: { s, banner } };
  }, 5000);
  await screenshot('token-required');
  await page.fill('[data-testid="token-input"]', viewer);
  await page.click('[data-testid="token-save"]');
  await waitFor('the page to go live with the token', async () => {
    const s = await readPage(page);
    return { ok: s.connection === 'live' && s.counts.total === 0, seen: s };
  }, 5000);
  const secured = await ctl('create', '--type=secured');
  r = await waitFor('a task on the token-protected taskd', async () => {
    const s = await readPage(page);
    return { ok: s.rows[0]?.id === secured.id && s.counts.enqueued === 1, seen: s };
  }, BUDGET_MS);
  log(`with a token: live, new task on the page after ${r.ms} ms`);
  await page.reload();
  await waitFor('the token to survive a reload', async () => {
    const s = await readPage(page);
    return { ok: s.connection === 'live' && s.rows[0]?.id === secured.id, seen: s };
  }, 5000);

  if (pageErrors.length) fail(`the page reported errors:\n${pageErrors.join('\n')}`);
}

let status = 0;
try {
  await main();
  log('PASS');
} catch (error) {
  status = 1;
  console.error(`\nFAIL: ${error instanceof TestFailure ? error.message : error.stack}`);
  if (pageErrors.length) console.error(`page errors:\n${pageErrors.join('\n')}`);
  try {
    await screenshot('failure');
  } catch {
    // The browser may be what failed.
  }
  if (taskd) console.error(`taskd log (${taskd.log}):\n${tail(taskd.log)}`);
  console.error(`logs and database kept in ${WORKDIR}`);
} finally {
  await browser?.close().catch(() => {});
  if (taskd && !taskd.exited) {
    taskd.process.kill('SIGTERM');
    await waitFor('taskd to exit', () => taskd.exited, 15000).catch(() => taskd.process.kill('SIGKILL'));
  }
  if (status === 0 && ownWorkdir) fs.rmSync(WORKDIR, { recursive: true, force: true });
}
process.exit(status);
