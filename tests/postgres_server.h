// PostgresServer: a throwaway PostgreSQL 15 for tests (issue 14). initdb
// into a temporary directory, the server on a Unix socket in it (no TCP
// port, so no clash with anything else on the machine), a superuser and a
// database both named "taskd"; stopped and removed at destruction. As root
// (as CI runs), initdb and the server run as Debian's `postgres` user, which
// then owns the directory: initdb refuses to run as root.
//
//   testing::PostgresServer postgres;
//   absl::Status started = postgres.Start();
//   TASKD_SKIP_WITHOUT_POSTGRES(started);  // see below
//   Use(postgres.uri());  // "postgresql:///taskd?host=/tmp/...&user=taskd"
//
// Stop() and Start() again restart the same cluster (a restart under load).
// Not thread-safe.
#ifndef TASKD_TESTS_POSTGRES_SERVER_H_
#define TASKD_TESTS_POSTGRES_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "storage/pg_connection.h"

namespace taskd::testing {

class PostgresServer {
 public:
  struct Options {
    // Also listen on TCP, on a free port of 127.0.0.1 (tcp_uri()).
    bool tcp = false;
  };
  PostgresServer() = default;
  explicit PostgresServer(const Options& options) : options_(options) {}
  ~PostgresServer();  // stops the server (immediately) and removes it all
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Creates the cluster on the first call, then starts the server and
  // waits until it accepts connections. NotFound when PostgreSQL's
  // programs are not installed (/usr/lib/postgresql/15/bin, or the
  // directory in $TASKD_PG_BINDIR); Internal, with the programs' output,
  // when they fail.
  absl::Status Start();
  // A fast shutdown: sessions are ended, and the data stays.
  absl::Status Stop();

  // A libpq URI for the database `database` as the user "taskd".
  std::string uri(const std::string& database = "taskd") const;
  // The same over TCP (Options::tcp), once started.
  std::string tcp_uri(const std::string& database = "taskd") const;
  // The directory holding the socket, the data (data/) and the log (log).
  const std::string& dir() const { return dir_; }

 private:
  absl::Status Run(const std::vector<std::string>& argv) const;

  Options options_;
  std::string bindir_;
  std::string dir_;
  // Without Options::tcp, only the number in the socket's name
  // (.s.PGSQL.<port>). With it, the TCP port, chosen at the first Start
  // (tcp_port_chosen_) and kept by restarts.
  int port_ = 5432;
  bool tcp_port_chosen_ = false;
  bool running_ = false;
};

// One PostgresServer for the whole test process, started on first use (the
// same result for every later call), stopped at exit.
absl::StatusOr<PostgresServer*> SharedPostgresServer();
// A new, empty database on SharedPostgresServer(); its URI.
absl::StatusOr<std::string> NewPostgresDatabase();

// Whether a test must fail, rather than skip, when PostgreSQL is missing:
// scripts/test (so CI) sets TASKD_REQUIRE_POSTGRES=1.
bool PostgresRequired();

// A fixture for tests against one PostgresServer per test suite (initdb
// takes a second or two): each test skips, or fails, as
// TASKD_SKIP_WITHOUT_POSTGRES says.
class PostgresTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;

  static PostgresServer& server() { return *server_; }
  // A new connection to server(); null (and the test failed) if it fails.
  std::unique_ptr<pg::Connection> Connect();

 private:
  static PostgresServer* server_;
  static absl::Status* start_;
};

}  // namespace taskd::testing

// In a test body: skips the test when `status` (PostgresServer::Start's) is
// NotFound and PostgreSQL is not required; fails it on any other error.
#define TASKD_SKIP_WITHOUT_POSTGRES(status)               \
  do {                                                    \
    const absl::Status taskd_pg_status = (status);        \
    if (absl::IsNotFound(taskd_pg_status) &&              \
        !::taskd::testing::PostgresRequired()) {          \
      GTEST_SKIP() << taskd_pg_status;                    \
    }                                                     \
    ASSERT_TRUE(taskd_pg_status.ok()) << taskd_pg_status; \
  } while (false)

#endif  // TASKD_TESTS_POSTGRES_SERVER_H_
