// The PostgreSQL engine's one wrapper around libpq (issue 14): a connection,
// the results of its statements, and the one place where PostgreSQL's
// errors (SQLSTATE codes) become canonical absl::Status codes. libpq's types
// never leave the pg_* files.
//
//   pg::Connection::Options options;
//   options.uri = "postgresql:///taskd?host=/run/postgresql";
//   absl::StatusOr<std::unique_ptr<pg::Connection>> db =
//       pg::Connection::Open(options);
//   if (!db.ok()) return db.status();  // UNAVAILABLE: the server is not there
//   absl::StatusOr<pg::Result> rows = (*db)->Exec(
//       "SELECT id FROM tasks WHERE tenant_id = $1", {tenant});
//   if (!rows.ok()) return rows.status();
//   for (int row = 0; row < rows->rows(); ++row) Use(rows->Text(row, 0));
//
// Parameters and results travel as text, PostgreSQL's own representation
// (bigint as decimal digits, bytea as \x hex); NULL is std::nullopt.
//
// A Connection is not thread-safe: one thread at a time (a pool hands them
// out). A Result is independent of its connection once returned.
#ifndef TASKD_STORAGE_PG_CONNECTION_H_
#define TASKD_STORAGE_PG_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

struct pg_conn;
struct pg_result;

namespace taskd::pg {

// A statement parameter: its text, or SQL NULL.
using Param = std::optional<std::string>;

// `bytes` as a bytea parameter (PostgreSQL's hex form, \x...).
std::string Bytea(absl::string_view bytes);

// The rows (or the command tag) of one statement. Move-only.
class Result {
 public:
  Result(Result&& other) noexcept;
  Result& operator=(Result&& other) noexcept;
  ~Result();

  int rows() const;
  int columns() const;
  bool IsNull(int row, int column) const;
  // The value as text; "" for NULL.
  std::string Text(int row, int column) const;
  // The value as a bigint; InvalidArgument (naming the column) if it is
  // NULL or not a number.
  absl::StatusOr<int64_t> Int64(int row, int column) const;
  // A bytea value's bytes; "" for NULL. DataLoss if it is not bytea text.
  absl::StatusOr<std::string> Bytes(int row, int column) const;
  // How many rows an INSERT, UPDATE or DELETE changed; 0 for others.
  int64_t affected() const;

 private:
  friend class Connection;
  explicit Result(pg_result* result) : result_(result) {}
  pg_result* result_;
};

class Connection {
 public:
  struct Options {
    // A libpq connection URI or key=value string. Required.
    std::string uri;
    // How long opening may take before it is UNAVAILABLE. Default 5 s.
    absl::Duration connect_timeout = absl::Seconds(5);
    // Shown in pg_stat_activity. Default "taskd".
    std::string application_name = "taskd";
    // A TCP peer that stops answering (a network partition, a host that is
    // gone) is given up about this long after, at both ends: libpq's TCP
    // keepalives and TCP_USER_TIMEOUT here, and the session's own
    // (tcp_keepalives_*, tcp_user_timeout) on the server, so that
    // PostgreSQL too ends the session, rolls back its transaction and
    // releases its locks. The systems' defaults take minutes to hours.
    // Zero keeps them. At least 1 s otherwise. Default 10 s. Keepalive
    // settings in `uri` win on this end.
    absl::Duration dead_peer_timeout = absl::Seconds(10);
  };

  // Connects. UNAVAILABLE (with libpq's reason) when the server cannot be
  // reached or refuses the login; InvalidArgument for a URI libpq cannot
  // parse. The server's notices (not errors) are dropped.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const Options& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one statement with $1, $2, ... bound to `params`. The statement's
  // error as PgError maps it; UNAVAILABLE when the connection is lost (the
  // statement's outcome is then unknown: it may have committed).
  //
  // Each distinct statement text is prepared once per connection (up to
  // kMaxPrepared of them; others are parsed each time).
  absl::StatusOr<Result> Exec(absl::string_view sql,
                              absl::Span<const Param> params = {});
  static constexpr size_t kMaxPrepared = 256;
  // Runs several statements without parameters (migrations), in one
  // implicit transaction unless they hold their own BEGIN/COMMIT.
  absl::Status ExecScript(absl::string_view sql);

  // Whether libpq has seen the connection fail; a broken connection
  // answers every call UNAVAILABLE and should be replaced.
  bool broken() const;
  // Whether a transaction is open and still usable: false outside one and
  // after a failed statement (PostgreSQL then refuses everything but
  // ROLLBACK).
  bool in_transaction() const;
  // Whether no transaction is open (neither usable nor failed).
  bool idle() const;

  // For a connection that has run LISTEN: waits up to `timeout` for a
  // notification, and takes every one that has arrived. True if any had;
  // UNAVAILABLE if the connection failed.
  absl::StatusOr<bool> AwaitNotification(absl::Duration timeout);

 private:
  explicit Connection(pg_conn* conn) : conn_(conn) {}
  absl::Status StatusOf(pg_result* result, absl::string_view sql) const;
  // Takes the notifications libpq has read; true if there were any.
  bool TakeNotifications();

  pg_conn* conn_;
  // Statement text -> the name it is prepared under on this connection.
  absl::flat_hash_map<std::string, std::string> prepared_;
};

// The one mapping from a PostgreSQL error to a canonical status, by the
// class of its SQLSTATE (PostgreSQL's Appendix A): unique violation →
// AlreadyExists; other integrity violations → FailedPrecondition;
// serialization failure and deadlock → Aborted (redo the transaction);
// connection exceptions, shutdown and lock timeouts → Unavailable; disk
// full and other insufficient resources → ResourceExhausted; a cancelled
// statement (statement_timeout) → DeadlineExceeded; data exceptions →
// InvalidArgument; anything else (a bug in taskd's SQL) → Internal. The
// message is "`context`: `message`" and keeps the SQLSTATE.
absl::Status PgError(absl::string_view sqlstate, absl::string_view message,
                     absl::string_view context);

}  // namespace taskd::pg

#endif  // TASKD_STORAGE_PG_CONNECTION_H_
