// The embedded TaskStore: one SQLite database file in WAL mode.
//
//   SqliteTaskStoreOptions options;
//   options.path = "taskd.db";
//   absl::StatusOr<std::unique_ptr<TaskStore>> store =
//       OpenSqliteTaskStore(options);
//
// One process owns a database file at a time: Open takes an exclusive lock
// on "<path>.lock" and fails with FailedPrecondition while another process
// holds it. Reads go through a pool of read-only connections, so that
// readers never wait for the writer.
//
// Writes are group-committed: Write (and the blocking WriteAndWait over it)
// queues the write for one writer thread, which applies every write queued
// meanwhile (up to max_batch) in one transaction with one sync. A write
// fails alone: it checks first (reads only, so a refused write changed
// nothing), then runs two statements (the task row, the history row), each
// atomic. If the second fails (a disk error), or SQLite rolls the whole
// transaction back on a storage error, the transaction is rolled back and
// the batch applied again without that write, once; if the disk fails again
// the whole batch fails. (There is no SAVEPOINT per write: one would undo
// just that write, but copy every page it touches into a statement
// journal.) After the COMMIT the writer publishes the new revision, calls
// on_commit with all the changes, and completes the calls from the writer
// thread; a WriteAndWait caller waits for its batch's commit. If the
// COMMIT fails, every write of the batch fails with its error and nothing
// is published. (A batch applied again runs its mutations and
// preconditions again: see TaskMutation.)
#ifndef TASKD_STORAGE_SQLITE_TASK_STORE_H_
#define TASKD_STORAGE_SQLITE_TASK_STORE_H_

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

struct SqliteTaskStoreOptions {
  // The database file, created if missing. Required.
  std::string path;

  // true (default): PRAGMA synchronous=FULL, an acknowledged change survives
  // power loss. false: synchronous=NORMAL, it survives a crash of taskd but
  // the last commits may be lost on power loss; commits are faster.
  bool synchronous_full = true;

  // The name of a registered SQLite VFS to open the database through
  // (tests use one that injects disk faults, storage/fault_injection_vfs.h);
  // empty (default): SQLite's default VFS.
  std::string vfs;

  // Read-only connections for Get, List and ReadChanges. Default 4.
  int read_connections = 4;

  // Get keeps tasks it read (by id, encoded) up to this many bytes in all
  // and answers them again from memory until a write changes them
  // (storage/task_cache.h). 0: every Get reads the database. Default 8 MiB
  // (about 25,000 tasks of the usual size).
  size_t task_cache_bytes = size_t{8} << 20;

  // Group commit: at most `max_batch` writes per transaction (a bigger
  // batch amortises the sync further but holds its first caller longer);
  // at most `max_queue` writes waiting, beyond which Write waits for room
  // (except on the writer thread, e.g. a WriteDone starting another write).
  // Defaults 256, 8192.
  int max_batch = 256;
  int max_queue = 8192;

  // WAL checkpoints: the commit that takes the log past `checkpoint_pages`
  // pages then copies them into the database file and syncs it, before its
  // calls return. A bigger log is checkpointed less often, and a page
  // written many times meanwhile is copied once: fewer, cheaper checkpoints
  // per write, but a longer pause for the commit that runs one. SQLite's
  // default is 1000. Default 10000 (about 40 MiB of log).
  int checkpoint_pages = 10000;

  // How long a statement waits for a lock held by another connection.
  absl::Duration busy_timeout = absl::Seconds(5);

  // History retention: the history keeps at least the last
  // `history_max_changes` changes (0 = no count limit) and drops changes
  // older than `history_max_age` (zero = no age limit), checked every
  // `history_trim_interval` commits. Defaults: 1,000,000 changes, 7 days.
  int64_t history_max_changes = 1'000'000;
  absl::Duration history_max_age = absl::Hours(24 * 7);
  int64_t history_trim_interval = 1024;

  // Where the store reads the time (Change::committed_at, history age).
  // Not owned; must outlive the store.
  Clock* clock = Clock::Real();

  // Called after every commit with the changes it made, in revision order,
  // from the committing thread, before the next commit starts. Must be quick
  // and must not call WriteAndWait (or the helpers over it).
  std::function<void(const std::vector<Change>&)> on_commit;

  // Called on every Get with whether the task cache answered it (a Get by
  // uuid never is). For metrics; must be quick.
  std::function<void(bool hit)> observe_get;

  // Called after every commit with its duration (begin to durable commit)
  // and the number of changes it held (a group commit holds many), from the
  // committing thread. For metrics; must be quick.
  std::function<void(absl::Duration, size_t)> observe_commit;
};

// Opens (creating and migrating as needed) the database at options.path.
// FailedPrecondition if the file was written by a newer taskd (a schema
// version this one does not know) or is in use by another process;
// Unavailable or DataLoss if it cannot be opened or read.
absl::StatusOr<std::unique_ptr<TaskStore>> OpenSqliteTaskStore(
    const SqliteTaskStoreOptions& options);

// The schema version this build writes.
int SqliteSchemaVersion();

// Starts a database at `path` from `backup` (a file TaskStore::Backup
// wrote): checks that the backup is whole (PRAGMA integrity_check) and a
// taskd database this build can open (schema version at most
// SqliteSchemaVersion()), then copies it to `path` durably (a temporary
// file beside it, synced, renamed, the directory synced). Refuses
// (AlreadyExists) if a database or its WAL is at `path` already: a restore
// never overwrites. InvalidArgument (or FailedPrecondition for a newer
// schema) naming what is wrong with the backup.
absl::Status RestoreSqliteDatabase(const std::string& backup,
                                   const std::string& path);

}  // namespace taskd

#endif  // TASKD_STORAGE_SQLITE_TASK_STORE_H_
