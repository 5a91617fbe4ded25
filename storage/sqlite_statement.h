// Small RAII wrappers over the SQLite C API, used only inside storage/,
// shaped after Chromium's sql::Statement.
//
//   Connection   one sqlite3 handle, its pragmas and its cache of prepared
//                statements.
//   Statement    one use of a prepared statement: bind, step, read. Reset
//                and its bindings cleared when it goes out of scope. It
//                remembers the first error (of the prepare, a bind or a
//                step); Step() and Run() report it.
//   Transaction  BEGIN IMMEDIATE ... COMMIT, rolled back on destruction
//                unless committed.
//
//   sqlite::Statement s = connection->Prepare(
//       "SELECT state FROM tasks WHERE id = ?1");
//   s.BindText(1, id);
//   while (s.Step()) states.push_back(s.ColumnInt64(0));
//   if (!s.status().ok()) return s.status();
//
// There is no separate check after Prepare: a statement that failed to
// prepare binds nothing and its first Step() or Run() returns the error.
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
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "query/task_fields.h"

namespace taskd::sqlite {

// Maps an SQLite result code to a canonical status:
//   BUSY, LOCKED, IOERR, CANTOPEN, PROTOCOL       -> Unavailable
//   FULL (disk full)                              -> ResourceExhausted
//                                                    (reason DISK_FULL)
//   CONSTRAINT                                    -> AlreadyExists
//   CORRUPT, NOTADB                               -> DataLoss
//   READONLY                                      -> FailedPrecondition
//   everything else                               -> Internal
// `context` says what was being done ("insert task").
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view context);

// One use of a prepared statement, from Connection::Prepare(). Movable, not
// copyable; must not outlive its connection.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  // Resets the statement (releasing the read snapshot a half-read SELECT
  // holds) and clears its bindings, ready for the next use.
  ~Statement();

  // Binding. Indexes are 1-based, as in SQLite. A failed bind is remembered
  // and returned by the next Step() or Run().
  void BindInt64(int index, int64_t value);
  // A bool, a double or an enum is a mistake here, or wants an explicit
  // cast; other integers are fine.
  template <typename T, typename = std::enable_if_t<!std::is_integral_v<T> ||
                                                    std::is_same_v<T, bool>>>
  void BindInt64(int index, T value) = delete;
  void BindText(int index, absl::string_view value);
  void BindBlob(int index, absl::string_view value);
  // A field value (query/task_fields.h): an int64 or a text.
  void Bind(int index, const FieldValue& value);
  // Anything else (a bool, a string literal) must say what it binds as.
  template <typename T>
  void Bind(int index, const T& value) = delete;

  // Steps to the next row: true if there is one; false when done or on an
  // error (then status() says which). Once an error is remembered, returns
  // false without stepping.
  bool Step();
  // Steps a statement that returns no rows; the remembered error, if any.
  absl::Status Run();
  // OK, or the first error of this statement's use.
  const absl::Status& status() const { return status_; }

  // Reading the current row. Indexes are 0-based, as in SQLite.
  int64_t ColumnInt64(int index) const;
  std::string ColumnText(int index) const;
  std::string ColumnBlob(int index) const;

 private:
  friend class Connection;
  // A statement that failed to prepare.
  explicit Statement(absl::Status error) : status_(std::move(error)) {}
  // `in_use` is the cache's flag for `stmt`, cleared on destruction; null:
  // `stmt` is this statement's own and is finalised on destruction.
  Statement(sqlite3* db, sqlite3_stmt* stmt, bool* in_use)
      : db_(db), stmt_(stmt), in_use_(in_use) {}
  void Remember(int rc, absl::string_view context);

  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  bool* in_use_ = nullptr;
  absl::Status status_;
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
  // Every Statement of this connection must be gone by then.
  ~Connection();

  // Runs `sql` (one or more statements, no parameters, no rows wanted).
  absl::Status Exec(absl::string_view sql, absl::string_view context);

  // A use of the prepared statement for `sql` (one statement). Statements
  // are prepared once and cached by their text; when the cache is full (128
  // texts) it drops those not in use (filtered list queries produce an
  // open-ended set of texts). A text already in use
  // (a nested use) gets a statement of its own, finalised after the use.
  // If preparing fails, the statement holds the error (see above).
  Statement Prepare(absl::string_view sql);

  sqlite3* handle() const { return db_; }

 private:
  // A prepared statement kept for reuse; in use while a Statement has it.
  struct CachedStatement {
    explicit CachedStatement(sqlite3_stmt* stmt) : stmt(stmt) {}
    CachedStatement(const CachedStatement&) = delete;
    CachedStatement& operator=(const CachedStatement&) = delete;
    ~CachedStatement() { sqlite3_finalize(stmt); }

    sqlite3_stmt* const stmt;
    bool in_use = false;
  };
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* const db_;
  std::map<std::string, std::unique_ptr<CachedStatement>, std::less<>> cache_;
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
