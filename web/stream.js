// One resumable Server-Sent Events stream from taskd, wrapped around
// EventSource.
//
// Two ways back after a break, both landing on "the revision after the last
// one seen":
//  - The connection drops (taskd restarts, a proxy times out): EventSource
//    reconnects by itself and sends Last-Event-ID; taskd resumes after it.
//  - EventSource gives up (taskd answered an HTTP error while starting), or
//    taskd ended the stream with a retryable `failed` event, or the stream
//    went silent: this class opens a new EventSource whose URL carries the
//    position (the owner's url(revision) builds it), with a backoff.
// A `failed` event always closes the EventSource: left open, it would
// reconnect forever to a stream that fails the same way.

import { ApiError, int } from './api.js';

// Codes for which opening the same stream again later may work.
const RETRYABLE = new Set([
  'unavailable', 'aborted', 'deadline_exceeded', 'resource_exhausted',
  'internal', 'unknown',
]);

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;

export class EventStream {
  // options:
  //   name        for messages ("tasks", "counts", "history")
  //   url         (revision) => URL; revision = last revision seen (0: none)
  //   revision    the last revision already covered before the first open
  //   events      {eventName: (data, messageEvent) => void}, data parsed
  //   onFailed    (ApiError) => true if the owner takes over (it will call
  //               restart() or stop()); otherwise retryable codes reopen
  //               and the others stop the stream with status 'failed'
  //   onStatus    (status, error) with status one of connecting, live,
  //               reconnecting, failed, stopped
  //   probe       async () => ApiError|null: asked why, when EventSource
  //               gives up without saying (it never shows the HTTP answer)
  //   idleTimeoutMs  reopen when nothing arrived for this long; only for
  //               streams that promise regular events (progress_interval)
  constructor(options) {
    this.options = options;
    this.revision = int(options.revision);
    this.status = 'stopped';
    this.error = null;
    this.source = null;
    this.retryTimer = null;
    this.idleTimer = null;
    this.backoffMs = BACKOFF_MIN_MS;
    this.opened = false;
  }

  start() {
    this.stop();
    this.opened = false;
    this.setStatus('connecting', null);
    this.open();
  }

  // Opens again from a given position, e.g. after a REVISION_COMPACTED
  // failure that named the oldest revision still kept.
  restart(revision) {
    this.revision = int(revision);
    this.start();
  }

  stop() {
    clearTimeout(this.retryTimer);
    clearTimeout(this.idleTimer);
    this.retryTimer = this.idleTimer = null;
    if (this.source) this.source.close();
    this.source = null;
    if (this.status !== 'failed') this.setStatus('stopped', null);
  }

  open() {
    const source = new EventSource(this.options.url(this.revision));
    this.source = source;
    this.armIdleTimer();

    source.onopen = () => {
      if (source !== this.source) return;
      this.opened = true;
      this.backoffMs = BACKOFF_MIN_MS;
      this.armIdleTimer();
      this.setStatus('live', null);
    };

    source.onerror = () => {
      if (source !== this.source) return;
      if (source.readyState === EventSource.CONNECTING) {
        // The browser retries on its own, with Last-Event-ID.
        this.setStatus('reconnecting', this.error);
      } else {
        this.source = null;
        source.close();
        this.giveUpThenRetry();
      }
    };

    for (const [name, handler] of Object.entries(this.options.events)) {
      source.addEventListener(name, (event) => {
        if (source !== this.source) return;
        this.noteEvent(event);
        let data = {};
        try {
          data = event.data ? JSON.parse(event.data) : {};
        } catch (e) {
          console.error(`${this.options.name}: event ${name} is not JSON`, event.data);
          return;
        }
        try {
          handler(data, event);
        } catch (e) {
          console.error(`${this.options.name}: ${name} handler failed`, e);
        }
      });
    }

    source.addEventListener('failed', (event) => {
      if (source !== this.source) return;
      source.close();
      this.source = null;
      clearTimeout(this.idleTimer);
      let body = null;
      try {
        body = JSON.parse(event.data);
      } catch {
        // Reported below as an unknown failure.
      }
      const error = ApiError.fromBody(body) ||
          new ApiError('unknown', `${this.options.name} stream failed: ${event.data}`);
      // Not live from here on, whoever acts next.
      this.setStatus('reconnecting', null);
      if (this.options.onFailed && this.options.onFailed(error)) return;
      if (RETRYABLE.has(error.code)) {
        this.setStatus('reconnecting', error);
        this.scheduleReopen();
      } else {
        this.setStatus('failed', error);
      }
    });
  }

  noteEvent(event) {
    // Events without an id (initial state) leave lastEventId as it was.
    const id = int(event.lastEventId);
    if (id > this.revision) this.revision = id;
    this.armIdleTimer();
    if (this.status !== 'live') this.setStatus('live', null);
  }

  async giveUpThenRetry() {
    clearTimeout(this.idleTimer);
    this.setStatus('reconnecting', this.error);
    if (this.options.probe) {
      const error = await this.options.probe().catch((e) => e);
      if (this.source || this.retryTimer || this.status === 'stopped') return;
      if (error instanceof ApiError && !RETRYABLE.has(error.code)) {
        // A bad token or a missing permission will not heal by waiting;
        // a new token restarts the streams.
        this.setStatus('failed', error);
        return;
      }
      if (error instanceof ApiError) this.setStatus('reconnecting', error);
    }
    this.scheduleReopen();
  }

  scheduleReopen() {
    clearTimeout(this.retryTimer);
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.open();
    }, delay);
  }

  armIdleTimer() {
    const timeout = this.options.idleTimeoutMs;
    if (!timeout) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      // A connection that died without a FIN looks open forever; the
      // progress events it promised are overdue, so open a fresh one.
      if (!this.source || this.source.readyState !== EventSource.OPEN) return;
      console.warn(`${this.options.name}: no event for ${timeout} ms; reopening`);
      this.source.close();
      this.source = null;
      this.setStatus('reconnecting', null);
      this.scheduleReopen();
    }, timeout);
  }

  setStatus(status, error) {
    const changed = status !== this.status || error !== this.error;
    this.status = status;
    this.error = error;
    if (changed && this.options.onStatus) this.options.onStatus(status, error);
  }
}
