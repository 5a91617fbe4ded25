#include "storage/sqlite_statement.h"

#include "absl/strings/str_cat.h"
#include "base/error_details.h"

namespace taskd::sqlite {
namespace {

constexpr size_t kMaxCachedStatements = 128;

}  // namespace

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view context) {
  std::string message =
      absl::StrCat(context, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_FULL:
      // The disk (or the file system's quota) is full: gRPC's canonical
      // code for "the entire file system is out of space". Retrying the
      // same call will not help until space is freed.
      return WithReason(absl::ResourceExhaustedError(message), "DISK_FULL");
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
      return absl::UnavailableError(message);
    case SQLITE_CONSTRAINT:
      return absl::AlreadyExistsError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    case SQLITE_READONLY:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

void Statement::BindInt64(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
}

void Statement::BindText(int index, absl::string_view value) {
  sqlite3_bind_text64(stmt_, index, value.data(), value.size(),
                      SQLITE_TRANSIENT, SQLITE_UTF8);
}

void Statement::BindBlob(int index, absl::string_view value) {
  sqlite3_bind_blob64(stmt_, index, value.data(), value.size(),
                      SQLITE_TRANSIENT);
}

absl::StatusOr<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  absl::Status status = SqliteError(db_, rc, "step");
  sqlite3_reset(stmt_);
  return status;
}

absl::Status Statement::Run() {
  absl::StatusOr<bool> row = Step();
  if (!row.ok()) return row.status();
  return absl::OkStatus();
}

int64_t Statement::ColumnInt64(int index) const {
  return sqlite3_column_int64(stmt_, index);
}

std::string Statement::ColumnText(int index) const {
  const unsigned char* text = sqlite3_column_text(stmt_, index);
  if (text == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(text),
                     sqlite3_column_bytes(stmt_, index));
}

std::string Statement::ColumnBlob(int index) const {
  const void* blob = sqlite3_column_blob(stmt_, index);
  if (blob == nullptr) return "";
  return std::string(static_cast<const char*>(blob),
                     sqlite3_column_bytes(stmt_, index));
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(
    const std::string& path, const Options& options) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_NOMUTEX |
              (options.read_only ? SQLITE_OPEN_READONLY
                                 : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags,
                           options.vfs.empty() ? nullptr : options.vfs.c_str());
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(db, rc, absl::StrCat("open ", path));
    sqlite3_close(db);
    return status;
  }
  std::unique_ptr<Connection> connection(new Connection(db));
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  sqlite3_extended_result_codes(db, 1);
  if (!options.read_only) {
    // journal_mode is persistent in the file; setting it needs a writer.
    absl::StatusOr<Statement*> wal =
        connection->Prepare("PRAGMA journal_mode=WAL");
    if (!wal.ok()) return wal.status();
    absl::StatusOr<bool> row = (*wal)->Step();
    if (!row.ok()) return row.status();
    std::string mode = *row ? (*wal)->ColumnText(0) : "";
    (*wal)->Reset();
    if (mode != "wal") {
      return absl::FailedPreconditionError(absl::StrCat(
          "open ", path, ": cannot switch to WAL mode (got \"", mode, "\")"));
    }
  }
  absl::Status status = connection->Exec(
      absl::StrCat(
          "PRAGMA synchronous=", options.synchronous_full ? "FULL" : "NORMAL",
          "; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;"),
      "set pragmas");
  if (!status.ok()) return status;
  return connection;
}

Connection::~Connection() {
  cache_.clear();  // statements must be finalised before the handle closes
  sqlite3_close(db_);
}

absl::Status Connection::Exec(absl::string_view sql,
                              absl::string_view context) {
  std::string text(sql);
  char* error = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error);
  sqlite3_free(error);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, context);
  return absl::OkStatus();
}

absl::StatusOr<Statement*> Connection::Prepare(absl::string_view sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) {
    it->second->Reset();
    return it->second.get();
  }
  if (cache_.size() >= kMaxCachedStatements) cache_.clear();
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return SqliteError(db_, rc, absl::StrCat("prepare \"", sql, "\""));
  }
  auto statement = std::unique_ptr<Statement>(new Statement(db_, stmt));
  Statement* result = statement.get();
  cache_.emplace(std::string(sql), std::move(statement));
  return result;
}

Transaction::~Transaction() {
  if (open_) {
    // Nothing useful can be done with a failed rollback: SQLite then rolls
    // back itself when the connection is next used or closed.
    (void)connection_->Exec("ROLLBACK", "rollback");
  }
}

absl::Status Transaction::Begin() {
  absl::Status status = connection_->Exec("BEGIN IMMEDIATE", "begin");
  if (status.ok()) open_ = true;
  return status;
}

absl::Status Transaction::BeginRead() {
  absl::Status status = connection_->Exec("BEGIN", "begin read");
  if (status.ok()) open_ = true;
  return status;
}

absl::Status Transaction::Commit() {
  absl::Status status = connection_->Exec("COMMIT", "commit");
  if (status.ok()) open_ = false;
  return status;
}

}  // namespace taskd::sqlite
