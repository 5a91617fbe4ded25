#include "storage/sqlite_statement.h"

#include <utility>

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

// ---- Statement -------------------------------------------------------------

Statement::Statement(Statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      stmt_(std::exchange(other.stmt_, nullptr)),
      in_use_(std::exchange(other.in_use_, nullptr)),
      status_(std::move(other.status_)) {}

Statement::~Statement() {
  if (stmt_ == nullptr) return;
  if (in_use_ != nullptr) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    *in_use_ = false;
  } else {
    sqlite3_finalize(stmt_);
  }
}

void Statement::Remember(int rc, absl::string_view context) {
  if (rc == SQLITE_OK || !status_.ok()) return;
  status_ = SqliteError(db_, rc, context);
}

void Statement::BindInt64(int index, int64_t value) {
  if (!status_.ok()) return;
  Remember(sqlite3_bind_int64(stmt_, index, value), "bind");
}

void Statement::BindText(int index, absl::string_view value) {
  if (!status_.ok()) return;
  Remember(sqlite3_bind_text64(stmt_, index, value.data(), value.size(),
                               SQLITE_TRANSIENT, SQLITE_UTF8),
           "bind");
}

void Statement::BindBlob(int index, absl::string_view value) {
  if (!status_.ok()) return;
  Remember(sqlite3_bind_blob64(stmt_, index, value.data(), value.size(),
                               SQLITE_TRANSIENT),
           "bind");
}

void Statement::Bind(int index, const FieldValue& value) {
  if (const int64_t* number = std::get_if<int64_t>(&value)) {
    BindInt64(index, *number);
  } else {
    BindText(index, std::get<std::string>(value));
  }
}

bool Statement::Step() {
  if (!status_.ok()) return false;
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) {
    Remember(rc, "step");
    // Ends the failed statement's transaction part now, not at destruction.
    sqlite3_reset(stmt_);
  }
  return false;
}

absl::Status Statement::Run() {
  Step();
  return status_;
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

// ---- Connection ------------------------------------------------------------

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
    Statement wal = connection->Prepare("PRAGMA journal_mode=WAL");
    std::string mode = wal.Step() ? wal.ColumnText(0) : "";
    if (!wal.status().ok()) return wal.status();
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

Statement Connection::Prepare(absl::string_view sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end() && !it->second->in_use) {
    it->second->in_use = true;
    return Statement(db_, it->second->stmt, &it->second->in_use);
  }
  const bool cache = it == cache_.end();
  if (cache && cache_.size() >= kMaxCachedStatements) {
    for (auto entry = cache_.begin(); entry != cache_.end();) {
      entry = entry->second->in_use ? std::next(entry) : cache_.erase(entry);
    }
  }
  sqlite3_stmt* stmt = nullptr;
  int rc =
      sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                         cache ? SQLITE_PREPARE_PERSISTENT : 0, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    return Statement(
        SqliteError(db_, rc, absl::StrCat("prepare \"", sql, "\"")));
  }
  if (!cache) return Statement(db_, stmt, nullptr);  // a nested use: its own
  auto cached = std::make_unique<CachedStatement>(stmt);
  cached->in_use = true;
  bool* in_use = &cached->in_use;
  cache_.emplace(std::string(sql), std::move(cached));
  return Statement(db_, stmt, in_use);
}

// ---- Transaction -----------------------------------------------------------

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
