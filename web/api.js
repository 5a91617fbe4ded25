// The one place that speaks HTTP to taskd: Connect-protocol unary calls
// (POST /tasks.v1.TaskService/<Method>, JSON in and out) and the URLs of the
// Server-Sent Event streams. Both carry the optional token from the header's
// token box.
//
// Everything taskd answers is proto3 canonical JSON: int64 values arrive as
// strings and fields at their default value are left out, so readers go
// through int() and the `|| ''` / `|| false` defaults rather than trusting a
// property to exist.

const TOKEN_KEY = 'taskd.dashboard.token';

// Where storage is disabled (private windows, strict policies) the token
// lives for this page only.
let tokenInMemory = '';

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return tokenInMemory;
  }
}

export function setToken(token) {
  tokenInMemory = token || '';
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Kept in memory only, see above.
  }
}

// An int64 (string), int32 (number) or a left-out default, as a Number.
// Revisions and counts stay far below 2^53.
export function int(value) {
  if (value === undefined || value === null || value === '') return 0;
  const n = Number(value);
  return Number.isFinite(n) ? n : 0;
}

// A failed call or stream: `code` is the canonical code in Connect's
// snake_case spelling ("invalid_argument"), `message` is taskd's message,
// which names what to fix (a filter error names the column).
export class ApiError extends Error {
  constructor(code, message, details = [], httpStatus = 0) {
    super(message);
    this.name = 'ApiError';
    this.code = code || 'unknown';
    this.details = Array.isArray(details) ? details : [];
    this.httpStatus = httpStatus;
  }

  // The google.rpc.ErrorInfo detail as {reason, domain, metadata}, or null.
  // Connect sends each detail as a base64 protobuf `value` plus an optional
  // `debug` JSON rendering; only the rendering is read, since decoding
  // protobuf by hand here would be a second implementation of it.
  get errorInfo() {
    for (const d of this.details) {
      if (d && /(^|\.)ErrorInfo$/.test(d.type || '') && d.debug) return d.debug;
    }
    return null;
  }

  get reason() {
    return this.errorInfo?.reason || '';
  }

  // Shown to people: "invalid_argument: filter: column 7: unknown field ...".
  toString() {
    return `${this.code}: ${this.message}`;
  }

  static fromBody(body, httpStatus = 0) {
    if (body && typeof body === 'object' && body.code) {
      return new ApiError(body.code, body.message || body.code, body.details, httpStatus);
    }
    return null;
  }
}

// Connect's mapping back from an HTTP status, for answers with no JSON error
// body (a proxy's 502, a server that is still starting).
function codeForHttpStatus(status) {
  switch (status) {
    case 400: return 'invalid_argument';
    case 401: return 'unauthenticated';
    case 403: return 'permission_denied';
    case 404: return 'unimplemented';
    case 429: case 502: case 503: case 504: return 'unavailable';
    default: return 'unknown';
  }
}

// Calls TaskService.<method> with `request`; resolves to the response
// object, rejects with ApiError (an unreachable server is `unavailable`).
// An AbortSignal in `signal` rejects with the usual AbortError.
export async function call(method, request, { signal } = {}) {
  const headers = {
    'Content-Type': 'application/json',
    'Connect-Protocol-Version': '1',
  };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;

  let response;
  try {
    response = await fetch(`/tasks.v1.TaskService/${method}`, {
      method: 'POST',
      headers,
      body: JSON.stringify(request || {}),
      cache: 'no-store',
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError('unavailable', `taskd is unreachable (${e.message})`);
  }

  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    // Not JSON: handled below as an error without a body.
  }
  if (response.ok && body) return body;
  throw ApiError.fromBody(body, response.status) ||
      new ApiError(codeForHttpStatus(response.status),
                   `HTTP ${response.status} ${response.statusText}: ${text.slice(0, 200)}`,
                   [], response.status);
}

// Every page of ListTasks for `request`, following nextPageToken: taskd may
// answer a page shorter than asked even when more follow, so one page is not
// proof that a task does not match. Resolves to {tasks, revision} where
// revision is the first page's snapshot.
export async function listAll(request, options) {
  const tasks = [];
  let revision = 0;
  let pageToken = '';
  for (let page = 0; page < 100; page++) {
    const answer = await call('ListTasks', { ...request, pageToken }, options);
    if (page === 0) revision = int(answer.revision);
    tasks.push(...(answer.tasks || []));
    pageToken = answer.nextPageToken || '';
    if (!pageToken) break;
  }
  return { tasks, revision };
}

// The URL of a Server-Sent Events endpoint. Parameters with an empty value
// are left out; arrays repeat the parameter (group_by=state&group_by=...).
// The token rides as access_token because EventSource cannot set headers.
// encodeURIComponent (not URLSearchParams) so that a space in a filter is
// %20, never '+', which a plain percent-decoder would keep as a plus.
export function streamUrl(path, params = {}) {
  const parts = [];
  const add = (k, v) => parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '' || value === false) continue;
    if (Array.isArray(value)) value.forEach((v) => add(key, v));
    else add(key, value);
  }
  const token = getToken();
  if (token) add('access_token', token);
  return parts.length ? `${path}?${parts.join('&')}` : path;
}

// A filter term matching exactly one id, quoting as the filter language wants.
export function idTerm(id) {
  return `id = "${String(id).replace(/["\\]/g, (c) => `\\${c}`)}"`;
}
