// The side panel: one task's fields and its history.
//
// The history is a watch of that task alone (`id = "X"`) from revision 1:
// taskd replays every recorded change of it from the oldest it keeps, then
// goes on streaming new ones, so the panel stays current while open and
// resumes across taskd restarts like the other streams. If the history was
// trimmed below revision 1 (it always is, eventually), the failure names the
// oldest revision kept and the watch starts there instead.

import { call, idTerm, int, streamUrl } from './api.js';
import { EventStream } from './stream.js';
import { el, formatTime, formatValue, TASK_FIELDS } from './format.js';

// Fields that change with every change; the history shows what else did.
const NOISE = new Set(['revision', 'etag', 'updatedAt']);

export class TaskPanel {
  constructor(root, { onClose }) {
    this.root = root;
    this.onClose = onClose;
    this.title = root.querySelector('[data-testid="panel-title"]');
    this.badge = root.querySelector('[data-testid="panel-state"]');
    this.detail = root.querySelector('[data-testid="panel-detail"]');
    this.json = root.querySelector('[data-testid="panel-json"]');
    this.history = root.querySelector('[data-testid="history"]');
    this.note = root.querySelector('[data-testid="history-note"]');
    this.error = root.querySelector('[data-testid="panel-error"]');
    root.querySelector('[data-testid="panel-close"]').addEventListener('click', () => this.close());
    this.id = null;
    this.task = null;
    this.stream = null;
    this.seen = new Set(); // revisions already in the history list
    this.lastTask = null; // the task after the newest change listed
  }

  get openId() {
    return this.id;
  }

  open(id) {
    if (this.id === id) return;
    this.stop();
    this.id = id;
    this.task = null;
    this.lastTask = null;
    this.seen = new Set();
    this.history.replaceChildren();
    this.detail.replaceChildren();
    this.json.textContent = '';
    this.note.textContent = 'Loading history…';
    this.showError(null);
    this.title.textContent = id;
    this.title.title = id;
    this.badge.textContent = '';
    this.badge.className = 'badge';
    this.root.hidden = false;
    this.root.dataset.id = id;

    call('GetTask', { id }).then(
      (task) => { if (this.id === id) this.showTask(task); },
      (error) => { if (this.id === id && !this.task) this.showError(error); });
    this.watch(id);
  }

  close() {
    if (this.id === null) return;
    this.stop();
    this.id = null;
    this.root.hidden = true;
    delete this.root.dataset.id;
    this.onClose();
  }

  stop() {
    this.stream?.stop();
    this.stream = null;
  }

  // Restarts the history stream (a new token).
  reconnect() {
    if (this.id === null) return;
    const id = this.id;
    this.id = null;
    this.open(id);
  }

  watch(id) {
    const stream = new EventStream({
      name: 'history',
      revision: 0,
      url: (after) => streamUrl('/v1/tasks:watch', {
        filter: idTerm(id),
        start_revision: after + 1,
        include_previous: 'true',
      }),
      events: {
        change: (data) => this.addChange(data),
        progress: () => this.noteCaughtUp(),
      },
      onFailed: (error) => {
        if (error.code === 'out_of_range' && error.reason === 'REVISION_COMPACTED') {
          const oldest = int(error.errorInfo?.metadata?.oldest_revision);
          if (oldest > stream.revision + 1) {
            this.trimmedBelow = oldest;
            stream.restart(oldest - 1);
            return true;
          }
        }
        return false;
      },
      onStatus: (status, error) => {
        if (status === 'failed') this.showError(error);
        else if (status === 'live') {
          this.showError(null);
          this.noteCaughtUp();
        }
      },
    });
    this.trimmedBelow = 0;
    this.stream = stream;
    stream.start();
  }

  noteCaughtUp() {
    const count = this.seen.size;
    const trimmed = this.trimmedBelow
      ? ` Changes before revision ${this.trimmedBelow} were trimmed from the history.`
      : '';
    this.note.textContent =
        `${count} change${count === 1 ? '' : 's'} recorded; new ones appear live.${trimmed}`;
  }

  addChange(event) {
    const task = event.task || {};
    const revision = int(event.revision) || int(task.revision);
    if (this.seen.has(revision)) return; // replayed after a reconnect
    this.seen.add(revision);

    // Without include_previous support, the previous change listed is the
    // best "before" there is.
    const before = event.previous || (event.type === 'CREATED' ? null : this.lastTask);
    this.lastTask = task;

    const item = el('li', { className: 'history-item', dataset: {
      testid: 'history-item', revision: String(revision), type: event.type || '' } });
    const head = el('div', { className: 'history-head' },
      el('span', { className: 'rev' }, `#${revision}`),
      el('span', { className: `event event-${(event.type || '').toLowerCase()}` }, event.type || '?'),
      transition(before, task, event.type),
      el('time', { className: 'history-time', title: task.updatedAt || '' },
        formatTime(task.updatedAt, { millis: true })));
    item.append(head);
    const changes = describeChanges(before, task, event.type);
    if (changes) item.append(el('div', { className: 'history-changes' }, changes));

    // Newest first, like the table; a replay may arrive out of place only
    // after a compaction restart, so insert by revision.
    const after = [...this.history.children].find((li) => int(li.dataset.revision) < revision);
    this.history.insertBefore(item, after || null);

    if (event.type !== 'DELETED' && (!this.task || revision > int(this.task.revision))) {
      this.showTask(task);
    } else if (event.type === 'DELETED') {
      this.badge.textContent = 'deleted';
      this.badge.className = 'badge state-deleted';
    }
    this.noteCaughtUp();
  }

  showTask(task) {
    this.task = task;
    this.showError(null);
    const state = task.state || 'unknown';
    this.badge.textContent = task.result_code ? `${state} · ${task.result_code}` : state;
    this.badge.className = `badge state-${state} ${task.result_code ? `result-${task.result_code}` : ''}`;
    const rows = [];
    const known = new Set(TASK_FIELDS.map((f) => f.name));
    const fields = [...TASK_FIELDS,
      ...Object.keys(task).filter((k) => !known.has(k)).map((name) => ({ name, kind: 'string' }))];
    for (const field of fields) {
      rows.push(el('dt', {}, field.name),
                el('dd', { className: task[field.name] === undefined ? 'unset' : '',
                           dataset: { field: field.name } },
                   formatValue(task[field.name], field.kind)));
    }
    this.detail.replaceChildren(...rows);
    this.json.textContent = JSON.stringify(task, null, 2);
  }

  showError(error) {
    this.error.hidden = !error;
    this.error.textContent = error ? String(error) : '';
  }
}

function transition(before, task, type) {
  const from = before ? stateLabel(before) : '';
  const to = stateLabel(task);
  if (type === 'CREATED' || !from) return el('span', { className: 'transition' }, to);
  if (type === 'DELETED') return el('span', { className: 'transition' }, `${to} → deleted`);
  if (from === to) return el('span', { className: 'transition same' }, to);
  return el('span', { className: 'transition' }, `${from} → ${to}`);
}

function stateLabel(task) {
  const state = task.state || '?';
  return task.result_code ? `${state} (${task.result_code})` : state;
}

// "executor_id: agent-7 · assignCount: 0 → 1": every other field this change
// touched, so a history entry says more than the state did.
function describeChanges(before, task, type) {
  if (type === 'DELETED') return '';
  const fields = TASK_FIELDS.map((f) => f.name);
  const parts = [];
  for (const name of fields) {
    if (NOISE.has(name) || name === 'state' || name === 'result_code') continue;
    const a = before ? before[name] : undefined;
    const b = task[name];
    if (JSON.stringify(a) === JSON.stringify(b)) continue;
    if (type === 'CREATED') {
      if (b === undefined || name === 'id' || name === 'uuid' || name === 'enqueuedAt') continue;
      parts.push(`${name}: ${formatValue(b, kindOf(name))}`);
    } else if (a === undefined) {
      parts.push(`${name}: ${formatValue(b, kindOf(name))}`);
    } else {
      parts.push(`${name}: ${formatValue(a, kindOf(name))} → ${formatValue(b, kindOf(name))}`);
    }
  }
  return parts.join(' · ');
}

function kindOf(name) {
  return TASK_FIELDS.find((f) => f.name === name)?.kind || 'string';
}
