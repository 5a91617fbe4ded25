// Small RAII wrappers over the SQLite C API, used only inside storage/.
//
//   Connection   one sqlite3 handle, its pragmas and its cache of prepared
//                statements.
//   Statement    one prepared statement: bind, step, read, reset.
//   Transaction  BEGIN IMMEDIATE ... COMMIT, rolled back on destruction
//                unless committed.
//
// SqliteError() is the one place where SQLite result codes become canonical
// absl::Status codes.
//
// None of these types is thread-safe; the store gives each connection to one
// thread at a time.
#ifndef TASKD_STORAGE_SQLITE_STATEMENT_H_
#define TASKD_STORAGE_SQLITE_STATEMENT_H_

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskd::sqlite {

// Maps an SQLite result code to a canonical status:
//   BUSY, LOCKED, IOERR, CANTOPEN, PROTOCOL       -> Unavailable
//   FULL (disk full)                              -> ResourceExhausted
//                                                    (reason DISK_FULL)
//   CONSTRAINT                                    -> AlreadyExists
//   CORRUPT, NOTADB                               -> DataLoss
//   everything else                               -> Internal
// `context` says what was being done ("insert task").
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view context);

class Statement {
 public:
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Binding. Indexes are 1-based, as in SQLite.
  void BindInt64(int index, int64_t value);
  void BindInt(int index, int value) = delete;  // bind int64_t explicitly
  void BindText(int index, absl::string_view value);
  void BindBlob(int index, absl::string_view value);

  // Stepping. Step() returns true for a row, false when done. Run() steps a
  // statement that returns no rows.
  absl::StatusOr<bool> Step();
  absl::Status Run();

  // Reading the current row. Indexes are 0-based, as in SQLite.
  int64_t ColumnInt64(int index) const;
  std::string ColumnText(int index) const;
  std::string ColumnBlob(int index) const;

  // Makes the statement ready for new bindings. Releases the read snapshot a
  // half-read SELECT holds.
  void Reset();

 private:
  friend class Connection;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}

  sqlite3* const db_;
  sqlite3_stmt* const stmt_;
};

// A statement borrowed from a Connection's cache; reset when returned.
class ScopedStatement {
 public:
  explicit ScopedStatement(Statement* statement) : statement_(statement) {}
  ScopedStatement(const ScopedStatement&) = delete;
  ScopedStatement& operator=(const ScopedStatement&) = delete;
  ~ScopedStatement() { statement_->Reset(); }

  Statement* operator->() const { return statement_; }
  Statement& operator*() const { return *statement_; }

 private:
  Statement* const statement_;
};

class Connection {
 public:
  struct Options {
    bool read_only = false;
    // PRAGMA synchronous: FULL survives power loss; NORMAL survives a crash
    // of the process but may lose the last commits on power loss.
    bool synchronous_full = true;
    int busy_timeout_ms = 5000;
    // The registered SQLite VFS to open the file through (tests inject
    // faults with one); empty: SQLite's default VFS.
    std::string vfs;
  };

  // Opens (creating unless read_only) the database at `path` in WAL mode.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const std::string& path, const Options& options);

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // Runs `sql` (one or more statements, no parameters, no rows wanted).
  absl::Status Exec(absl::string_view sql, absl::string_view context);

  // The cached prepared statement for `sql`, reset and with bindings
  // cleared. Valid until the connection is destroyed.
  absl::StatusOr<Statement*> Prepare(absl::string_view sql);

  sqlite3* handle() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* const db_;
  // Keyed by SQL text. Bounded: cleared when it grows past a limit, since
  // filtered list queries produce an open-ended set of texts.
  std::map<std::string, std::unique_ptr<Statement>, std::less<>> cache_;
};

class Transaction {
 public:
  explicit Transaction(Connection* connection) : connection_(connection) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  // Rolls back unless Commit() succeeded.
  ~Transaction();

  // BEGIN IMMEDIATE: takes the write lock now, so that a read-modify-write
  // never fails half-way with BUSY.
  absl::Status Begin();
  // BEGIN (deferred): for a read-only transaction, whose reads then all see
  // one snapshot, taken at the first read.
  absl::Status BeginRead();
  absl::Status Commit();

 private:
  Connection* const connection_;
  bool open_ = false;
};

}  // namespace taskd::sqlite

#endif  // TASKD_STORAGE_SQLITE_STATEMENT_H_
