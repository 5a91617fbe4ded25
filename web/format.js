// How task values look on the page, and a tiny DOM builder. Task data is
// only ever placed with textContent (never as HTML): ids and types are
// caller-chosen strings.

// Every Task field in the order the detail panel lists them. proto3 JSON
// leaves out fields at their default, so `kind` says what "missing" means.
export const TASK_FIELDS = [
  { name: 'id', kind: 'string' },
  { name: 'uuid', kind: 'string' },
  { name: 'type', kind: 'string' },
  { name: 'state', kind: 'string' },
  { name: 'result_code', kind: 'string' },
  { name: 'priority', kind: 'string' },
  { name: 'tenant_id', kind: 'string' },
  { name: 'policy_id', kind: 'string' },
  { name: 'resource_id', kind: 'string' },
  { name: 'executor_id', kind: 'string' },
  { name: 'enqueuedAt', kind: 'time' },
  { name: 'assignedAt', kind: 'time' },
  { name: 'startedAt', kind: 'time' },
  { name: 'completedAt', kind: 'time' },
  { name: 'updatedAt', kind: 'time' },
  { name: 'revision', kind: 'int' },
  { name: 'etag', kind: 'string' },
  { name: 'assignCount', kind: 'int' },
  { name: 'maxAssignCount', kind: 'int' },
  { name: 'cancelRequested', kind: 'bool' },
  { name: 'progress', kind: 'progress' },
  { name: 'queueTimeout', kind: 'duration' },
  { name: 'ackTimeout', kind: 'duration' },
  { name: 'heartBeatInterval', kind: 'duration' },
  { name: 'execTimeout', kind: 'duration' },
  { name: 'leaseExpiresAt', kind: 'time' },
  { name: 'deadline', kind: 'time' },
  { name: 'timeout', kind: 'string' },
];

// el('td', {className: 'x', dataset: {testid: 'cell-id'}, title: '…'}, child, 'text', ...)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === '') continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A proto3 JSON Timestamp ("2026-12-02T07:51:49.820565Z", up to nanoseconds)
// as a Date; Date.parse is only specified for milliseconds.
export function parseTime(text) {
  if (!text) return null;
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!m) return null;
  const millis = (m[2] || '').padEnd(3, '0').slice(0, 3);
  const date = new Date(`${m[1]}.${millis}${m[3]}`);
  return Number.isNaN(date.getTime()) ? null : date;
}

// Local wall-clock time: HH:MM:SS (with .mmm on request), and the date too
// when it is not today.
export function formatTime(text, { millis = false } = {}) {
  const date = parseTime(text);
  if (!date) return text ? String(text) : '—';
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  let clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  if (millis) clock += `.${pad(date.getMilliseconds(), 3)}`;
  const now = new Date();
  if (date.toDateString() !== now.toDateString()) {
    clock = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${clock}`;
  }
  return clock;
}

export function formatValue(value, kind) {
  switch (kind) {
    case 'int':
      return String(value === undefined ? 0 : Number(value));
    case 'bool':
      return String(value === true);
    case 'time':
      return value ? `${formatTime(value, { millis: true })}  (${value})` : '—';
    case 'duration':
      return value || '0s';
    case 'progress':
      return value ? progressText(value) : '—';
    default:
      if (value === undefined || value === '') return '—';
      return typeof value === 'object' ? JSON.stringify(value) : String(value);
  }
}

export function progressText(progress) {
  const current = Number(progress?.current || 0);
  const total = Number(progress?.total || 0);
  return total ? `${current}/${total}` : String(current);
}
