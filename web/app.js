// The dashboard: wires the count tiles and chart (one counts stream), the
// task table (TaskFeed), the side panel and the connection indicator.
//
// Everything on the page is pushed by taskd over Server-Sent Events; the
// only requests the page makes on its own are the snapshot behind the table
// (and its membership re-checks) and the panel's GetTask.
//
// The count tiles and the chart always cover all tasks; the filter box
// narrows the table only, so a filter never hides the overall picture.

import { call, getToken, int, setToken, streamUrl } from './api.js';
import { RateChart, formatRate } from './chart.js';
import { el, formatTime, progressText } from './format.js';
import { TaskPanel } from './panel.js';
import { EventStream } from './stream.js';
import { TaskFeed } from './tasks.js';

const STATES = ['enqueued', 'assigned', 'started', 'paused', 'completed'];
const RESULTS = ['ok', 'error', 'warning', 'cancelled', 'abandoned', 'timedout'];
const COUNTS_MIN_INTERVAL_MS = 500;
// Past this long without both streams live, "reconnecting" becomes "offline".
const OFFLINE_AFTER_MS = 10000;

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

// ---- Connection indicator -------------------------------------------------

const connection = {
  node: $('connection'),
  text: $('connection-text'),
  revisionNode: $('last-revision'),
  banner: $('banner'),
  notLiveSince: Date.now(),
  everLive: false,
  countsRevision: 0,
  tableProblem: null, // the last failed list or re-check, until one succeeds
};

function updateConnection() {
  const statuses = [feed.status, counts.status];
  const errors = [feed.stream?.error, counts.error].filter(Boolean);
  let state;
  if (statuses.every((s) => s === 'live')) {
    state = 'live';
    connection.notLiveSince = 0;
    connection.everLive = true;
  } else {
    if (!connection.notLiveSince) connection.notLiveSince = Date.now();
    if (statuses.includes('failed')) state = 'offline';
    else if (!connection.everLive && Date.now() - connection.notLiveSince < OFFLINE_AFTER_MS) state = 'connecting';
    else if (Date.now() - connection.notLiveSince < OFFLINE_AFTER_MS) state = 'reconnecting';
    else state = 'offline';
  }
  const labels = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', offline: 'Offline' };
  connection.node.dataset.state = state;
  connection.text.textContent = labels[state];

  const revision = Math.max(feed.revision, connection.countsRevision);
  connection.revisionNode.textContent = revision ? revision.toLocaleString('en-US') : '–';
  connection.revisionNode.dataset.revision = String(revision);

  // Why the page is not live (a bad token, taskd unreachable), and what the
  // table could not do; the same message from several sources shows once.
  const shown = [...(state === 'live' ? [] : errors), connection.tableProblem].filter(Boolean);
  const messages = [...new Set(shown.map(String))];
  connection.banner.hidden = messages.length === 0;
  connection.banner.textContent = messages.join(' — ');
  // Point at the remedy when taskd wants a (different) token.
  const tokenTrouble = shown.some((e) => e.code === 'unauthenticated' || e.code === 'permission_denied');
  $('token-form').classList.toggle('needed', tokenTrouble);
}

// ---- Count tiles and chart ---------------------------------------------------

const chart = new RateChart($('rate-chart'));
const rateCreated = $('rate-created');
const rateCompleted = $('rate-completed');
let lastCountsAt = 0;

function onCounts(data, event) {
  const byState = Object.fromEntries(STATES.map((s) => [s, 0]));
  const byResult = Object.fromEntries(RESULTS.map((r) => [r, 0]));
  let total = 0;
  for (const group of data.groups || []) {
    const [state = '', result = ''] = group.values || [];
    const count = int(group.count);
    total += count;
    if (state in byState) byState[state] += count;
    if (state === 'completed' && result in byResult) byResult[result] += count;
  }
  // The bar under each number: its share of all tasks (states) or of the
  // completed ones (results).
  for (const state of STATES) setTile(`count-${state}`, byState[state], total);
  for (const result of RESULTS) setTile(`count-result-${result}`, byResult[result], byState.completed);
  setTile('count-total', total);

  // taskd sends an event as soon as min_interval allows after a change, so
  // the changes it reports happened within about min_interval before it,
  // even when the previous event is minutes old (nothing changed between).
  const now = Date.now();
  const since = lastCountsAt ? now - lastCountsAt : COUNTS_MIN_INTERVAL_MS;
  const span = Math.min(since, Math.max(1000, 2 * COUNTS_MIN_INTERVAL_MS));
  chart.add(int(data.created), int(data.completed), now, span);
  lastCountsAt = now;
  drawChart();

  connection.countsRevision = Math.max(connection.countsRevision, int(data.revision), int(event.lastEventId));
  updateConnection();
}

function setTile(testid, value, whole = 0) {
  const share = $(`${testid}-share`);
  if (share) share.style.width = `${whole ? (100 * value) / whole : 0}%`;
  const node = $(testid);
  const text = value.toLocaleString('en-US');
  if (node.textContent === text) return;
  const first = node.dataset.count === undefined;
  node.textContent = text;
  node.style.setProperty('--chars', String(text.length));
  node.dataset.count = String(value);
  if (!first) {
    node.animate?.([{ transform: 'scale(1.08)' }, { transform: 'scale(1)' }], { duration: 300, easing: 'ease-out' });
  }
}

function drawChart() {
  const now = Date.now();
  chart.draw(now);
  const rates = chart.rates(now, 10);
  rateCreated.textContent = formatRate(rates.created);
  rateCompleted.textContent = formatRate(rates.completed);
}

const counts = new EventStream({
  name: 'counts',
  url: () => streamUrl('/v1/tasks:counts', {
    group_by: ['state', 'result_code'],
    min_interval: `${COUNTS_MIN_INTERVAL_MS}ms`,
  }),
  events: { counts: onCounts },
  onStatus: (status) => {
    // After a break the first event is the counts now; the time between
    // is not a rate.
    if (status !== 'live') lastCountsAt = 0;
    updateConnection();
  },
  probe: () => call('CountTasks', { groupBy: ['state'] }).then(() => null),
});

// ---- Filter box and tiles -------------------------------------------------------

const filterForm = $('filter-form');
const filterInput = $('filter-input');
const filterError = $('filter-error');
const tiles = [...document.querySelectorAll('[data-filter]')];

const normalize = (filter) => filter.trim().replace(/\s+/g, ' ');

// Resolves to the ApiError that stopped it, or null. A refused filter is
// shown next to the box (taskd's message names the column); other errors
// (taskd unreachable, a bad token) go to the banner under the top bar.
async function applyFilter(filter) {
  filter = normalize(filter);
  filterInput.value = filter;
  filterForm.dataset.busy = 'true';
  try {
    await feed.setFilter(filter);
    showFilterError(null);
    history.replaceState(null, '', filter ? `#filter=${encodeURIComponent(filter)}` : location.pathname + location.search);
    return null;
  } catch (error) {
    if (error.code === 'invalid_argument') showFilterError(error);
    else showTableError(error);
    return error;
  } finally {
    delete filterForm.dataset.busy;
    markActiveTile();
  }
}

function showFilterError(error) {
  filterError.textContent = error ? error.message : '';
  filterError.title = error ? String(error) : '';
  filterInput.setAttribute('aria-invalid', error ? 'true' : 'false');
}

function showTableError(error) {
  connection.tableProblem = error;
  updateConnection();
}

function markActiveTile() {
  for (const tile of tiles) {
    const active = tile.dataset.filter === feed.filter;
    tile.classList.toggle('active', active);
    tile.setAttribute('aria-pressed', String(active));
  }
  $('table-title').textContent = feed.filter ? 'Matching tasks' : 'Recent tasks';
}

filterForm.addEventListener('submit', (e) => {
  e.preventDefault();
  applyFilter(filterInput.value);
});
$('filter-clear').addEventListener('click', () => applyFilter(''));
for (const tile of tiles) {
  tile.addEventListener('click', () => {
    applyFilter(feed.filter === tile.dataset.filter ? '' : tile.dataset.filter);
  });
}

// ---- Task table -----------------------------------------------------------------

const tbody = $('task-rows');
const rowCount = $('row-count');
const emptyNote = $('table-empty');
const rowsById = new Map(); // id -> <tr>
let renderQueued = false;
const changedSinceRender = new Set(); // ids whose rows should flash

function queueRender(changedIds) {
  changedIds?.forEach?.((id) => changedSinceRender.add(id));
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(render);
}

function render() {
  renderQueued = false;
  const tasks = feed.sorted();
  const keep = new Set();
  const ordered = [];
  for (const task of tasks) {
    keep.add(task.id);
    let tr = rowsById.get(task.id);
    if (!tr) {
      tr = el('tr', { dataset: { testid: 'task-row', id: task.id } });
      tr.addEventListener('click', () => {
        panel.open(tr.dataset.id);
        queueRender();
      });
      rowsById.set(task.id, tr);
    }
    if (tr.dataset.revision !== String(int(task.revision))) fillRow(tr, task);
    // Draw the eye to what a change just touched; a new list (another
    // filter) is not news.
    if (changedSinceRender.has(task.id)) {
      tr.animate?.([{ backgroundColor: 'var(--flash)' }, { backgroundColor: 'transparent' }],
                   { duration: 1500, easing: 'ease-out' });
    }
    tr.classList.toggle('selected', task.id === panel.openId);
    ordered.push(tr);
  }
  for (const [id, tr] of rowsById) {
    if (!keep.has(id)) {
      tr.remove();
      rowsById.delete(id);
    }
  }
  // Reorder only when needed; moving rows restarts their animations.
  const current = [...tbody.children];
  if (current.length !== ordered.length || ordered.some((tr, i) => current[i] !== tr)) {
    tbody.replaceChildren(...ordered);
  }
  changedSinceRender.clear();
  emptyNote.hidden = tasks.length > 0;
  emptyNote.textContent = feed.filter ? 'No task matches this filter.' : 'No tasks yet.';
  rowCount.textContent = `${tasks.length} row${tasks.length === 1 ? '' : 's'}, newest change first`;
  tbody.dataset.filter = feed.filter;
  updateConnection();
}

function fillRow(tr, task) {
  const state = task.state || '';
  const result = task.result_code || '';
  tr.dataset.revision = String(int(task.revision));
  tr.dataset.state = state;
  tr.dataset.result = result;
  const progress = task.progress;
  const total = int(progress?.total);
  const current = int(progress?.current);
  const percent = total ? Math.min(100, Math.round((100 * current) / total)) : 0;
  tr.replaceChildren(
    cell('id', task.id, 'mono id'),
    cell('type', task.type || '—'),
    cell('state', el('span', { className: `badge state-${state}` }, state || '—')),
    cell('result', result ? el('span', { className: `badge result-${result}` }, result) : '—'),
    cell('priority', el('span', { className: `priority priority-${task.priority || 'normal'}` }, task.priority || 'normal')),
    cell('tenant', task.tenant_id || '—', 'mono dim'),
    cell('executor', task.executor_id || '—', 'mono'),
    cell('updated', el('time', { title: task.updatedAt || '' }, formatTime(task.updatedAt)), 'num'),
    cell('progress', progress
      ? el('span', { className: 'progress' },
           el('span', { className: 'bar' }, el('span', { className: 'fill', style: `width:${percent}%` })),
           el('span', { className: 'num' }, progressText(progress)))
      : '—'),
  );
}

function cell(name, content, className = '') {
  const td = el('td', { className, dataset: { testid: `cell-${name}` } }, content);
  if (typeof content === 'string' && content !== '—') td.title = content;
  return td;
}

// ---- Streams, panel, token ----------------------------------------------------------------

const feed = new TaskFeed({
  onChange: queueRender,
  onStatus: updateConnection,
  onError: showTableError,
});

const panel = new TaskPanel($('task-panel'), { onClose: () => queueRender() });

document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') panel.close();
  if (e.key === '/' && !(document.activeElement instanceof HTMLInputElement)) {
    e.preventDefault();
    filterInput.focus();
  }
});

const tokenForm = $('token-form');
const tokenInput = $('token-input');
tokenInput.value = getToken();
tokenForm.addEventListener('submit', (e) => {
  e.preventDefault();
  setToken(tokenInput.value.trim());
  startStreams();
});

// (Re)starts everything: at load and when the token changes.
function startStreams() {
  counts.start();
  startTable();
  panel.reconnect();
}

// The table needs one successful list before it can watch; until then,
// try again. A filter refused at load (a stale link) leaves its message by
// the box and the table shows all tasks.
let tableRetry = null;
async function startTable() {
  clearTimeout(tableRetry);
  let error = await applyFilter(filterInput.value);
  if (error && error.code === 'invalid_argument') {
    error = await feed.setFilter('').then(() => null, (e) => e);
    if (!error) {
      showTableError(null);
      markActiveTile();
    }
  }
  if (error) tableRetry = setTimeout(startTable, 2000);
}

// The chart scrolls and "reconnecting" turns "offline" with time alone.
setInterval(() => {
  drawChart();
  updateConnection();
}, 1000);

filterInput.value = new URLSearchParams(location.hash.slice(1)).get('filter') || '';
startStreams();
