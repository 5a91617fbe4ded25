#include "storage/pg_connection.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/error_details.h"

namespace taskd::pg {
namespace {

// Connection::Options::dead_peer_timeout as TCP settings: keepalive probes
// from a third of it, kProbes of them a sixth apart, and unacknowledged data
// given up at the whole (whole seconds and milliseconds, as text).
constexpr char kProbes[] = "3";
struct DeadPeer {
  std::string idle;
  std::string interval;
  std::string user_timeout_ms;
};

// None for a zero timeout (the systems' defaults stay).
std::optional<DeadPeer> DeadPeerSettings(absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) return std::nullopt;
  timeout = std::max(timeout, absl::Seconds(1));
  const int64_t seconds = absl::ToInt64Seconds(timeout);
  return DeadPeer{absl::StrCat(std::max<int64_t>(1, seconds / 3)),
                  absl::StrCat(std::max<int64_t>(1, seconds / 6)),
                  absl::StrCat(absl::ToInt64Milliseconds(timeout))};
}

// libpq's messages end in a newline.
std::string Trimmed(const char* message) {
  return std::string(
      absl::StripTrailingAsciiWhitespace(message ? message : ""));
}

}  // namespace

absl::Status PgError(absl::string_view sqlstate, absl::string_view message,
                     absl::string_view context) {
  const std::string text =
      absl::StrCat(context, ": ", message, " (SQLSTATE ", sqlstate, ")");
  if (sqlstate == "23505") return absl::AlreadyExistsError(text);
  if (sqlstate == "40001" || sqlstate == "40P01") {
    return absl::AbortedError(text);
  }
  if (sqlstate == "53100") {
    return WithReason(absl::ResourceExhaustedError(text), "DISK_FULL");
  }
  if (sqlstate == "57014") return absl::DeadlineExceededError(text);
  if (sqlstate == "55P03") return absl::UnavailableError(text);
  const absl::string_view kind = sqlstate.substr(0, 2);
  if (kind == "08" || kind == "57" || kind == "58") {
    // Connection exceptions; the server shutting down or not yet accepting
    // connections; its own I/O errors.
    return absl::UnavailableError(text);
  }
  if (kind == "23") return absl::FailedPreconditionError(text);
  if (kind == "53") return absl::ResourceExhaustedError(text);
  if (kind == "22") return absl::InvalidArgumentError(text);
  return absl::InternalError(text);
}

// ---- Result ----------------------------------------------------------------

Result::Result(Result&& other) noexcept
    : result_(std::exchange(other.result_, nullptr)) {}

Result& Result::operator=(Result&& other) noexcept {
  if (this != &other) {
    if (result_ != nullptr) PQclear(result_);
    result_ = std::exchange(other.result_, nullptr);
  }
  return *this;
}

Result::~Result() {
  if (result_ != nullptr) PQclear(result_);
}

int Result::rows() const { return PQntuples(result_); }
int Result::columns() const { return PQnfields(result_); }

bool Result::IsNull(int row, int column) const {
  return PQgetisnull(result_, row, column) != 0;
}

std::string Result::Text(int row, int column) const {
  return std::string(PQgetvalue(result_, row, column),
                     PQgetlength(result_, row, column));
}

std::string Bytea(absl::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text = "\\x";
  text.reserve(2 + 2 * bytes.size());
  for (unsigned char c : bytes) {
    text.push_back(kHex[c >> 4]);
    text.push_back(kHex[c & 0xf]);
  }
  return text;
}

absl::StatusOr<std::string> Result::Bytes(int row, int column) const {
  if (IsNull(row, column)) return std::string();
  const char* text = PQgetvalue(result_, row, column);
  const int length = PQgetlength(result_, row, column);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (length < 2 || text[0] != '\\' || text[1] != 'x' || length % 2 != 0) {
    return absl::DataLossError(absl::StrCat("column ", PQfname(result_, column),
                                            " is not bytea in hex form"));
  }
  std::string bytes;
  bytes.reserve(static_cast<size_t>(length - 2) / 2);
  for (int i = 2; i < length; i += 2) {
    const int high = nibble(text[i]), low = nibble(text[i + 1]);
    if (high < 0 || low < 0) {
      return absl::DataLossError(absl::StrCat(
          "column ", PQfname(result_, column), " holds a bad hex digit"));
    }
    bytes.push_back(static_cast<char>(high << 4 | low));
  }
  return bytes;
}

absl::StatusOr<int64_t> Result::Int64(int row, int column) const {
  int64_t value = 0;
  if (IsNull(row, column) || !absl::SimpleAtoi(Text(row, column), &value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "column ", PQfname(result_, column), " of row ", row,
        " is not a bigint: ",
        IsNull(row, column) ? "NULL" : "\"" + Text(row, column) + "\""));
  }
  return value;
}

int64_t Result::affected() const {
  int64_t count = 0;
  (void)absl::SimpleAtoi(PQcmdTuples(result_), &count);
  return count;
}

// ---- Connection ------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(
    const Options& options) {
  if (options.uri.empty()) {
    return absl::InvalidArgumentError("PostgreSQL URI is empty");
  }
  // A string libpq cannot read is the caller's mistake, not an outage.
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.uri.c_str(), &parse_error);
  if (parsed == nullptr) {
    const std::string reason =
        parse_error != nullptr ? Trimmed(parse_error) : "out of memory";
    PQfreemem(parse_error);
    return absl::InvalidArgumentError(absl::StrCat("PostgreSQL URI: ", reason));
  }
  PQconninfoFree(parsed);
  // libpq counts whole seconds, at least 2 (a 1 would be taken as 2).
  const std::string timeout = absl::StrCat(
      std::max<int64_t>(2, absl::ToInt64Seconds(absl::Ceil(
                               options.connect_timeout, absl::Seconds(1)))));
  const std::optional<DeadPeer> dead =
      DeadPeerSettings(options.dead_peer_timeout);
  std::vector<const char*> keys = {"connect_timeout", "application_name"};
  std::vector<const char*> values = {timeout.c_str(),
                                     options.application_name.c_str()};
  if (dead) {
    const std::pair<const char*, const char*> settings[] = {
        {"keepalives", "1"},
        {"keepalives_idle", dead->idle.c_str()},
        {"keepalives_interval", dead->interval.c_str()},
        {"keepalives_count", kProbes},
        {"tcp_user_timeout", dead->user_timeout_ms.c_str()}};
    for (const auto& [key, value] : settings) {
      keys.push_back(key);
      values.push_back(value);
    }
  }
  // Last, so that the URI's own settings win over those above: libpq takes
  // the last value of a key, and expand_dbname spreads the URI's at its
  // place.
  keys.push_back("dbname");
  values.push_back(options.uri.c_str());
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* conn =
      PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn == nullptr) {
    return absl::ResourceExhaustedError("PostgreSQL: out of memory");
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string reason = Trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL: ", reason));
  }
  // Notices (such as "table does not exist, skipping") are not errors;
  // libpq would print them on stderr.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  std::unique_ptr<Connection> connection(new Connection(conn));
  if (dead) {
    // The server's end of the socket (ignored by PostgreSQL on a Unix
    // socket).
    if (absl::Status s = connection->ExecScript(
            absl::StrCat("SET tcp_keepalives_idle = ", dead->idle,
                         "; SET tcp_keepalives_interval = ", dead->interval,
                         "; SET tcp_keepalives_count = ", kProbes,
                         "; SET tcp_user_timeout = ", dead->user_timeout_ms));
        !s.ok()) {
      return s;
    }
  }
  return connection;
}

Connection::~Connection() { PQfinish(conn_); }

bool Connection::broken() const { return PQstatus(conn_) != CONNECTION_OK; }

bool Connection::in_transaction() const {
  return PQtransactionStatus(conn_) == PQTRANS_INTRANS;
}

bool Connection::idle() const {
  return PQtransactionStatus(conn_) == PQTRANS_IDLE;
}

bool Connection::TakeNotifications() {
  bool any = false;
  while (PGnotify* notify = PQnotifies(conn_)) {
    any = true;
    PQfreemem(notify);
  }
  return any;
}

absl::StatusOr<bool> Connection::AwaitNotification(absl::Duration timeout) {
  if (TakeNotifications()) return true;
  pollfd fd{PQsocket(conn_), POLLIN, 0};
  if (fd.fd < 0) {
    return absl::UnavailableError("PostgreSQL: the connection is closed");
  }
  const int ready =
      ::poll(&fd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (ready > 0 && PQconsumeInput(conn_) == 0) {
    return absl::UnavailableError(absl::StrCat(
        "PostgreSQL: the connection failed: ", Trimmed(PQerrorMessage(conn_))));
  }
  return TakeNotifications();
}

absl::Status Connection::StatusOf(pg_result* result,
                                  absl::string_view sql) const {
  const std::string context = absl::StrCat("PostgreSQL: ", sql.substr(0, 60),
                                           sql.size() > 60 ? "…" : "");
  if (result == nullptr || broken()) {
    return absl::UnavailableError(absl::StrCat(
        context, ": the connection failed: ", Trimmed(PQerrorMessage(conn_))));
  }
  switch (PQresultStatus(result)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
      return absl::OkStatus();
    default:
      break;
  }
  const char* sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  std::string message =
      Trimmed(PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY));
  if (message.empty()) message = Trimmed(PQresultErrorMessage(result));
  if (const char* detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL)) {
    absl::StrAppend(&message, " (", Trimmed(detail), ")");
  }
  return PgError(sqlstate ? sqlstate : "XX000", message, context);
}

absl::StatusOr<Result> Connection::Exec(absl::string_view sql,
                                        absl::Span<const Param> params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const Param& param : params) {
    values.push_back(param.has_value() ? param->c_str() : nullptr);
  }
  std::string text(sql);
  auto prepared = prepared_.find(text);
  if (prepared == prepared_.end() && prepared_.size() < kMaxPrepared) {
    std::string name = absl::StrCat("taskd_", prepared_.size());
    Result made(PQprepare(conn_, name.c_str(), text.c_str(),
                          static_cast<int>(values.size()), nullptr));
    if (absl::Status status = StatusOf(made.result_, sql); !status.ok()) {
      return status;
    }
    prepared = prepared_.emplace(std::move(text), std::move(name)).first;
  }
  Result result(
      prepared != prepared_.end()
          ? PQexecPrepared(conn_, prepared->second.c_str(),
                           static_cast<int>(values.size()), values.data(),
                           nullptr, nullptr, /*resultFormat=*/0)
          : PQexecParams(conn_, text.c_str(), static_cast<int>(values.size()),
                         nullptr, values.data(), nullptr, nullptr,
                         /*resultFormat=*/0));
  absl::Status status = StatusOf(result.result_, sql);
  if (!status.ok()) return status;
  return result;
}

absl::Status Connection::ExecScript(absl::string_view sql) {
  const std::string text(sql);
  Result result(PQexec(conn_, text.c_str()));
  return StatusOf(result.result_, sql);
}

}  // namespace taskd::pg
