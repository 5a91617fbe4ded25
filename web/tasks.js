// The live task table's model: the ~100 most recently updated tasks that
// match the user's filter, kept current by one watch stream.
//
// Snapshot, then changes: ListTasks answers the newest rows together with the
// store revision they are a snapshot of, and the watch starts at the next
// revision, so no change falls between the two and none is applied twice
// (a change is applied only if it is newer than the row it replaces).
//
// A filtered watch also reports a task that LEAVES the filter (taskd sends
// an event when the task matched before or after the change), and the page
// cannot evaluate taskd's filter language itself. So every UPDATED task is
// asked about again, in batches, with ListTasks over
// `(<filter>) AND (id = "a" OR id = "b" ...)`: rows that do not come back
// are dropped, and a task not yet in the table enters only when it does
// come back (so a task leaving the filter never flashes into the table).
// Without a filter every task belongs and nothing is asked.

import { ApiError, call, idTerm, int, listAll, streamUrl } from './api.js';
import { EventStream } from './stream.js';

export const MAX_ROWS = 100;
// Re-checks run at most this often; a lone change is checked at once
// (after RECHECK_GATHER_MS, to batch a burst).
const RECHECK_MS = 500;
const RECHECK_GATHER_MS = 30;
const RECHECK_RETRY_MS = 2000;
const RELIST_RETRY_MS = 2000;
// The filter language allows 256 conditions and 8 KiB; stay well inside.
const RECHECK_MAX_IDS = 100;
const RECHECK_MAX_CHARS = 6000;

export class TaskFeed {
  // callbacks: onChange(changedIds: Set) after rows changed;
  // onStatus(status, error) of the watch stream; onError(ApiError|null)
  // for problems that are not the filter's (a failed relist or recheck).
  constructor({ onChange, onStatus, onError }) {
    this.onChange = onChange;
    this.onStatus = onStatus;
    this.onError = onError;
    this.filter = '';
    this.rows = new Map(); // id -> task
    this.stream = null;
    this.generation = 0; // bumped when the rows are replaced; older answers are stale
    this.listing = 0; // bumped per setFilter call; only the latest may apply
    this.pending = new Set(); // ids to recheck against the filter
    this.candidates = new Map(); // id -> task updated into view, awaiting its recheck
    this.recheckTimer = null;
    this.lastRecheckAt = 0;
    this.relistTimer = null;
  }

  get revision() {
    return this.stream ? this.stream.revision : 0;
  }

  get status() {
    return this.stream ? this.stream.status : 'connecting';
  }

  // Lists `filter`'s newest rows and watches from there. Rejects with
  // ApiError when taskd refuses the filter; the previous filter then stays
  // live, so a typo never empties the wall screen.
  async setFilter(filter) {
    filter = (filter || '').trim();
    const listing = ++this.listing;
    clearTimeout(this.relistTimer);
    const snapshot = await this.listNewest(filter);
    if (listing !== this.listing) return;

    this.generation++;
    this.stream?.stop();
    clearTimeout(this.recheckTimer);
    this.recheckTimer = null;
    this.pending.clear();
    this.candidates.clear();
    this.filter = filter;
    this.rows = new Map(snapshot.tasks.map((task) => [task.id, task]));
    this.trim();
    this.onError(null);
    this.watch(snapshot.revision);
    this.onChange(new Set());
  }

  // Up to MAX_ROWS newest rows. A page may be shorter than asked while more
  // follow, hence the loop; the first page's revision is the watch's start
  // (changes after it that later pages already show are then skipped as
  // not newer).
  async listNewest(filter) {
    const tasks = [];
    let revision = 0;
    let pageToken = '';
    for (let page = 0; page < 10 && tasks.length < MAX_ROWS; page++) {
      const answer = await call('ListTasks', {
        filter,
        pageSize: MAX_ROWS - tasks.length,
        orderBy: 'updatedAt desc',
        pageToken,
      });
      if (page === 0) revision = int(answer.revision);
      tasks.push(...(answer.tasks || []));
      pageToken = answer.nextPageToken || '';
      if (!pageToken) break;
    }
    return { tasks, revision };
  }

  // Lists again and watches from the new snapshot: after the history the
  // watch needed was trimmed (REVISION_COMPACTED), or the database is behind
  // the revision the page had seen (REVISION_AHEAD, restored from a backup).
  relist() {
    this.setFilter(this.filter).catch((error) => {
      this.onError(error);
      clearTimeout(this.relistTimer);
      this.relistTimer = setTimeout(() => this.relist(), RELIST_RETRY_MS);
    });
  }

  watch(revision) {
    const filter = this.filter;
    this.stream = new EventStream({
      name: 'tasks',
      revision,
      url: (after) => streamUrl('/v1/tasks:watch', {
        filter,
        start_revision: after + 1,
        progress_interval: '5s',
      }),
      events: {
        change: (data) => this.apply(data),
        progress: () => {},
        synced: () => {},
      },
      onFailed: (error) => {
        const reason = error.reason;
        if (error.code === 'out_of_range' &&
            (reason === 'REVISION_COMPACTED' || reason === 'REVISION_AHEAD')) {
          this.relist();
          return true;
        }
        return false;
      },
      onStatus: (status, error) => this.onStatus(status, error),
      probe: () => call('ListTasks', { filter, pageSize: 1 }).then(() => null),
      // progress_interval is 5s: silence for much longer means a dead link.
      idleTimeoutMs: 25000,
    });
    this.stream.start();
  }

  apply(event) {
    const task = event.task;
    if (!task || !task.id) return;
    const revision = int(event.revision) || int(task.revision);
    const row = this.rows.get(task.id);
    if (row && int(row.revision) >= revision) return; // the snapshot is newer

    if (event.type === 'DELETED') {
      this.rows.delete(task.id);
      this.pending.delete(task.id);
      this.candidates.delete(task.id);
    } else if (event.type === 'UPDATED' && this.filter && !row) {
      // Entering the filter, or leaving it unseen: the recheck tells.
      const candidate = this.candidates.get(task.id);
      if (!candidate || int(candidate.revision) < revision) this.candidates.set(task.id, task);
      this.queueRecheck(task.id);
      return;
    } else {
      this.rows.set(task.id, task);
      if (event.type === 'UPDATED' && this.filter) this.queueRecheck(task.id);
      this.trim();
    }
    this.onChange(new Set([task.id]));
  }

  // Keeps the MAX_ROWS most recently changed rows.
  trim() {
    if (this.rows.size <= MAX_ROWS) return;
    for (const task of this.sorted().slice(MAX_ROWS)) {
      this.rows.delete(task.id);
      this.pending.delete(task.id);
    }
  }

  // Newest change first. Revisions order changes exactly; updatedAt strings
  // do not sort as text (their fractional digits vary).
  sorted() {
    return [...this.rows.values()].sort((a, b) => int(b.revision) - int(a.revision));
  }

  queueRecheck(id) {
    this.pending.add(id);
    if (!this.recheckTimer) {
      const wait = Math.max(RECHECK_GATHER_MS, this.lastRecheckAt + RECHECK_MS - Date.now());
      this.recheckTimer = setTimeout(() => this.recheck(), wait);
    }
  }

  async recheck() {
    this.recheckTimer = null;
    this.lastRecheckAt = Date.now();
    const generation = this.generation;
    const filter = this.filter;
    const ids = [...this.pending].filter((id) => this.rows.has(id) || this.candidates.has(id));
    this.pending.clear();
    const changed = new Set();

    for (const batch of batches(ids)) {
      let answer;
      try {
        answer = await listAll({
          filter: `(${filter}) AND (${batch.map(idTerm).join(' OR ')})`,
          pageSize: batch.length,
        });
      } catch (error) {
        if (generation !== this.generation) return;
        // Ask again later; the rows stay until taskd can answer.
        batch.forEach((id) => this.pending.add(id));
        clearTimeout(this.recheckTimer);
        this.recheckTimer = setTimeout(() => this.recheck(), RECHECK_RETRY_MS);
        if (error instanceof ApiError && error.code !== 'unavailable') this.onError(error);
        break;
      }
      if (generation !== this.generation) return;

      const found = new Map(answer.tasks.map((task) => [task.id, task]));
      for (const id of batch) {
        const row = this.rows.get(id) || this.candidates.get(id);
        if (!row) continue; // deleted meanwhile
        const fresh = found.get(id);
        if (fresh) {
          // Matching: the newer of the listed task and the last event.
          this.candidates.delete(id);
          const best = int(fresh.revision) > int(row.revision) ? fresh : row;
          if (this.rows.get(id) !== best) {
            this.rows.set(id, best);
            changed.add(id);
          }
        } else if (int(row.revision) <= answer.revision) {
          // Not matching as of a snapshot at least as new as the task.
          this.candidates.delete(id);
          if (this.rows.delete(id)) changed.add(id);
        }
        // Otherwise it changed after the snapshot; its event queued it again.
      }
    }
    if (changed.size) {
      this.trim();
      this.onChange(changed);
    }
  }

  stop() {
    this.generation++;
    this.listing++;
    this.stream?.stop();
    clearTimeout(this.recheckTimer);
    clearTimeout(this.relistTimer);
    this.recheckTimer = this.relistTimer = null;
  }
}

function batches(ids) {
  const out = [];
  let batch = [];
  let chars = 0;
  for (const id of ids) {
    const length = idTerm(id).length + 4;
    if (batch.length && (batch.length >= RECHECK_MAX_IDS || chars + length > RECHECK_MAX_CHARS)) {
      out.push(batch);
      batch = [];
      chars = 0;
    }
    batch.push(id);
    chars += length;
  }
  if (batch.length) out.push(batch);
  return out;
}
