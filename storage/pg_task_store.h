// The TaskStore for several taskd servers: PostgreSQL 15, shared by every
// replica (issue 14).
//
//   PgTaskStoreOptions options;
//   options.uri = "postgresql://taskd@db.internal/taskd";
//   absl::StatusOr<std::unique_ptr<TaskStore>> store =
//       OpenPgTaskStore(options);
//
// Several processes may open one database at once; each sees every change,
// whichever wrote it:
//
// - Revisions are handed out in commit order. Every write transaction
//   first locks the one row of `meta` (SELECT ... FOR UPDATE), reads the
//   last revision there, numbers its changes after it, stores the new last
//   revision and commits, which releases the lock. PostgreSQL makes a
//   commit visible before it releases the transaction's locks, so the next
//   writer's changes are numbered after every committed one and become
//   visible after them: any snapshot that sees revision N sees every
//   revision below it. There are never gaps to wait out. The cost: writes
//   run one transaction at a time across all replicas; group commit (one
//   transaction per batch of writes) spreads it.
// - on_commit sees every change of every replica, in revision order, once.
//   A replica's own batch is handed over right after its commit (after any
//   earlier revision it has not handed over yet, read from the history
//   first). Other replicas' changes are read from the history by a follower
//   thread, woken by NOTIFY (sent inside each write transaction, so
//   delivered at its commit) and, as a safety net for a lost notification
//   or connection, every poll_interval. CurrentRevision() is the last
//   revision handed to on_commit.
// - Migrations run once, under a transaction-scoped advisory lock, whichever
//   replica starts first; the history trim rides in a write transaction, so
//   it too runs on one replica at a time.
// - The sweepers (executor timers, retention) run on one replica at a time:
//   the one whose follower connection holds a session advisory lock
//   (LeadsSweepers()). The others try to take it every poll_interval, so
//   when the leader's connection closes (the replica exits or dies, or
//   loses PostgreSQL) another leads within about a poll_interval; one cut
//   off by a network partition is given up after dead_peer_timeout.
//   The lock needs a session of its own: a pooler in transaction mode
//   (pg.listen = false) would share it between replicas, which then could
//   both lead: harmless to the tasks (every sweeper write re-checks its
//   task), but twice the sweepers' reads.
//
// Reads (Get, List, Count, ReadChanges) use a pool of connections; List and
// Count read their revision and rows in one REPEATABLE READ snapshot. A lost
// connection fails the call in progress UNAVAILABLE and is replaced on the
// next call, so the store recovers by itself when PostgreSQL comes back.
#ifndef TASKD_STORAGE_PG_TASK_STORE_H_
#define TASKD_STORAGE_PG_TASK_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/task_store.h"

namespace taskd {

// The settings only PostgreSQL has: how a replica hears of the others'
// commits and how it treats its connections (taskd's --pg_* flags).
struct PgSettings {
  // The follower's safety net: how often it reads the history even without
  // a notification, and how often it tries for the sweepers' lock another
  // replica holds. Default 1 s.
  absl::Duration poll_interval = absl::Seconds(1);
  // Whether the follower LISTENs for the writers' notifications (default).
  // false: it only polls, every poll_interval; for a connection pooler
  // that cannot hold a LISTEN (PgBouncer in transaction mode).
  bool listen = true;
  // How long connecting may take before a call fails UNAVAILABLE.
  absl::Duration connect_timeout = absl::Seconds(5);
  // Every connection gives up a peer that stops answering about this long
  // after, at both ends (pg::Connection::Options::dead_peer_timeout): a
  // replica cut off from PostgreSQL by a network partition loses the
  // sweepers' lock then, and another takes over within a poll_interval
  // more. Default 10 s.
  absl::Duration dead_peer_timeout = absl::Seconds(10);
};

struct PgTaskStoreOptions {
  // A libpq connection URI (postgresql://...). Required.
  std::string uri;
  // Read connections for Get, List, Count and ReadChanges. Default 4.
  int read_connections = 4;
  // Group commit, as SqliteTaskStoreOptions: at most `max_batch` writes per
  // transaction, at most `max_queue` waiting.
  int max_batch = 256;
  int max_queue = 8192;
  // History retention, as SqliteTaskStoreOptions.
  int64_t history_max_changes = 1'000'000;
  absl::Duration history_max_age = absl::Hours(24 * 7);
  int64_t history_trim_interval = 1024;
  // PostgreSQL's own settings (above).
  PgSettings pg;
  // Not owned; must outlive the store.
  Clock* clock = Clock::Real();
  // As SqliteTaskStoreOptions::on_commit, with every replica's changes;
  // called from the writer or the follower thread, one call at a time.
  std::function<void(const std::vector<Change>&)> on_commit;
  // As SqliteTaskStoreOptions::observe_commit, for this replica's batches.
  std::function<void(absl::Duration, size_t)> observe_commit;
};

// Connects, creates or migrates the schema (once, whichever replica comes
// first), and starts the writer and the follower. InvalidArgument for a URI
// libpq cannot parse; Unavailable if PostgreSQL cannot be reached;
// FailedPrecondition if the database holds a newer schema than this build
// knows.
absl::StatusOr<std::unique_ptr<TaskStore>> OpenPgTaskStore(
    const PgTaskStoreOptions& options);

// The schema version this build writes.
int PgSchemaVersion();

// Whether `db` (a --db value) names a PostgreSQL database (a postgresql://
// or postgres:// URI) rather than an SQLite file.
bool IsPostgresUri(const std::string& db);

// `db` fit for a log line: a URI's password (user:PASSWORD@ or
// password=PASSWORD) replaced by "***"; anything else unchanged.
std::string LoggableDb(const std::string& db);

}  // namespace taskd

#endif  // TASKD_STORAGE_PG_TASK_STORE_H_
