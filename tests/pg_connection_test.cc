// storage/pg_connection.h against a real PostgreSQL 15 (tests/
// postgres_server.h; skipped where PostgreSQL is not installed, unless
// TASKD_REQUIRE_POSTGRES=1): values through parameters and back, and each
// kind of failure as the status the engine will pass on.
#include "storage/pg_connection.h"

#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/postgres_server.h"

namespace taskd::pg {
namespace {

using ::testing::HasSubstr;

class PgConnectionTest : public testing::PostgresTest {};

TEST_F(PgConnectionTest, ParametersAndValuesRoundTrip) {
  std::unique_ptr<Connection> db = Connect();
  ASSERT_NE(db, nullptr);
  const Param params[] = {"9007199254740993", "héllo, 'world'", std::nullopt};
  absl::StatusOr<Result> row =
      db->Exec("SELECT $1::bigint, $2::text, $3::text, 'x' AS word", params);
  ASSERT_TRUE(row.ok()) << row.status();
  ASSERT_EQ(row->rows(), 1);
  ASSERT_EQ(row->columns(), 4);
  EXPECT_EQ(*row->Int64(0, 0), 9007199254740993);
  EXPECT_EQ(row->Text(0, 1), "héllo, 'world'");
  EXPECT_TRUE(row->IsNull(0, 2));
  EXPECT_EQ(row->Text(0, 2), "");
  absl::StatusOr<int64_t> not_a_number = row->Int64(0, 3);
  EXPECT_EQ(not_a_number.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_a_number.status().message(), HasSubstr("word"));
}

TEST_F(PgConnectionTest, ScriptsAndAffectedRows) {
  std::unique_ptr<Connection> db = Connect();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->ExecScript("DROP TABLE IF EXISTS counted;"
                             "CREATE TABLE counted (id text PRIMARY KEY);"
                             "INSERT INTO counted VALUES ('a'), ('b'), ('c');")
                  .ok());
  absl::StatusOr<Result> updated =
      db->Exec("UPDATE counted SET id = id || '!' WHERE id <> $1", {"b"});
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->affected(), 2);
}

TEST_F(PgConnectionTest, AUniqueViolationIsAlreadyExistsNamingTheKey) {
  std::unique_ptr<Connection> db = Connect();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->ExecScript("DROP TABLE IF EXISTS once;"
                             "CREATE TABLE once (id text PRIMARY KEY);")
                  .ok());
  ASSERT_TRUE(db->Exec("INSERT INTO once VALUES ($1)", {"t1"}).ok());
  absl::StatusOr<Result> again =
      db->Exec("INSERT INTO once VALUES ($1)", {"t1"});
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("once_pkey"));
  EXPECT_THAT(again.status().message(), HasSubstr("(id)=(t1)"));
  EXPECT_THAT(again.status().message(), HasSubstr("23505"));
  EXPECT_FALSE(db->broken());
}

TEST_F(PgConnectionTest, ABadStatementIsInternalAndTheConnectionGoesOn) {
  std::unique_ptr<Connection> db = Connect();
  ASSERT_NE(db, nullptr);
  absl::StatusOr<Result> bad = db->Exec("SELEC 1");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(bad.status().message(), HasSubstr("syntax error"));
  EXPECT_TRUE(db->Exec("SELECT 1").ok());
}

TEST_F(PgConnectionTest, ADeadlockIsAborted) {
  std::unique_ptr<Connection> first = Connect();
  std::unique_ptr<Connection> second = Connect();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(first
                  ->ExecScript("DROP TABLE IF EXISTS pair;"
                               "CREATE TABLE pair (id int PRIMARY KEY, n int);"
                               "INSERT INTO pair VALUES (1, 0), (2, 0);"
                               "SET deadlock_timeout = '100ms';")
                  .ok());
  ASSERT_TRUE(second->ExecScript("SET deadlock_timeout = '100ms'").ok());
  ASSERT_TRUE(
      first->ExecScript("BEGIN; UPDATE pair SET n = 1 WHERE id = 1").ok());
  ASSERT_TRUE(
      second->ExecScript("BEGIN; UPDATE pair SET n = 2 WHERE id = 2").ok());
  // Each now waits for the other's row: PostgreSQL ends one of them.
  absl::Status first_status;
  std::thread waiter([&] {
    first_status = first->Exec("UPDATE pair SET n = 1 WHERE id = 2").status();
  });
  absl::Status second_status =
      second->Exec("UPDATE pair SET n = 2 WHERE id = 1").status();
  // The one ended has let go of its row; the other goes on and finishes.
  (void)second->ExecScript(second_status.ok() ? "COMMIT" : "ROLLBACK");
  waiter.join();
  (void)first->ExecScript(first_status.ok() ? "COMMIT" : "ROLLBACK");
  const absl::Status& ended = first_status.ok() ? second_status : first_status;
  EXPECT_EQ(ended.code(), absl::StatusCode::kAborted) << ended;
  EXPECT_THAT(ended.message(), HasSubstr("40P01"));
  EXPECT_TRUE(first_status.ok() != second_status.ok())
      << first_status << " / " << second_status;
}

TEST_F(PgConnectionTest, NoServerIsUnavailable) {
  Connection::Options options;
  options.uri = absl::StrCat("postgresql:///taskd?host=", server().dir(),
                             "&port=1&user=taskd");
  absl::StatusOr<std::unique_ptr<Connection>> db = Connection::Open(options);
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable) << db.status();
  EXPECT_THAT(db.status().message(), HasSubstr("cannot connect"));
  options.uri = "postgresql://[::1";
  db = Connection::Open(options);
  EXPECT_EQ(db.status().code(), absl::StatusCode::kInvalidArgument)
      << db.status();
}

// dead_peer_timeout sets both ends of a TCP connection: the server's end
// is what PostgreSQL reports for the session (read from its socket).
TEST(PgConnectionTcpTest, ADeadPeerIsGivenUpAtBothEndsOnTcp) {
  testing::PostgresServer::Options server_options;
  server_options.tcp = true;
  testing::PostgresServer server(server_options);
  TASKD_SKIP_WITHOUT_POSTGRES(server.Start());
  auto settings = [&](absl::Duration timeout) -> std::string {
    Connection::Options options;
    options.uri = server.tcp_uri();
    options.dead_peer_timeout = timeout;
    absl::StatusOr<std::unique_ptr<Connection>> db = Connection::Open(options);
    if (!db.ok()) return db.status().ToString();
    absl::StatusOr<Result> shown = (*db)->Exec(
        "SELECT concat_ws(' ', current_setting('tcp_keepalives_idle'), "
        "current_setting('tcp_keepalives_interval'), "
        "current_setting('tcp_keepalives_count'), "
        "current_setting('tcp_user_timeout'))");
    if (!shown.ok()) return shown.status().ToString();
    return shown->Text(0, 0);
  };
  // The URI's settings win over those the options make.
  {
    Connection::Options options;
    options.uri = server.tcp_uri() + "?application_name=mine";
    absl::StatusOr<std::unique_ptr<Connection>> db = Connection::Open(options);
    ASSERT_TRUE(db.ok()) << db.status();
    absl::StatusOr<Result> name =
        (*db)->Exec("SELECT current_setting('application_name')");
    ASSERT_TRUE(name.ok()) << name.status();
    EXPECT_EQ(name->Text(0, 0), "mine");
  }
  // Seconds, seconds, probes, milliseconds.
  EXPECT_EQ(settings(absl::Seconds(9)), "3 1 3 9000");
  EXPECT_EQ(settings(absl::Seconds(60)), "20 10 3 60000");
  // Below a second, a second (and no zero, which would mean "the default").
  EXPECT_EQ(settings(absl::Milliseconds(300)), "1 1 3 1000");
  // Zero leaves the kernel's defaults (Linux: two hours before the first
  // probe) and no user timeout.
  std::string idle;
  std::ifstream("/proc/sys/net/ipv4/tcp_keepalive_time") >> idle;
  ASSERT_FALSE(idle.empty());
  EXPECT_THAT(settings(absl::ZeroDuration()),
              ::testing::AllOf(::testing::StartsWith(idle + " "),
                               ::testing::EndsWith(" 0")));
}

// Last: it restarts the suite's server.
TEST_F(PgConnectionTest, ZAStoppedServerIsUnavailableAndANewConnectionWorks) {
  std::unique_ptr<Connection> db = Connect();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(server().Stop().ok());
  absl::StatusOr<Result> lost = db->Exec("SELECT 1");
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable)
      << lost.status();
  EXPECT_TRUE(db->broken());
  ASSERT_TRUE(server().Start().ok());
  std::unique_ptr<Connection> fresh = Connect();
  ASSERT_NE(fresh, nullptr);
  EXPECT_TRUE(fresh->Exec("SELECT 1").ok());
}

TEST(PgErrorTest, EachClassHasItsCode) {
  struct Case {
    const char* sqlstate;
    absl::StatusCode code;
  };
  const Case cases[] = {
      {"23505", absl::StatusCode::kAlreadyExists},
      {"23503", absl::StatusCode::kFailedPrecondition},
      {"40001", absl::StatusCode::kAborted},
      {"40P01", absl::StatusCode::kAborted},
      {"08006", absl::StatusCode::kUnavailable},
      {"57P01", absl::StatusCode::kUnavailable},
      {"55P03", absl::StatusCode::kUnavailable},
      {"53100", absl::StatusCode::kResourceExhausted},
      {"53200", absl::StatusCode::kResourceExhausted},
      {"57014", absl::StatusCode::kDeadlineExceeded},
      {"22P02", absl::StatusCode::kInvalidArgument},
      {"42601", absl::StatusCode::kInternal},
      {"XX000", absl::StatusCode::kInternal},
  };
  for (const Case& c : cases) {
    absl::Status status = PgError(c.sqlstate, "what happened", "doing it");
    EXPECT_EQ(status.code(), c.code) << c.sqlstate;
    EXPECT_EQ(
        status.message(),
        absl::StrCat("doing it: what happened (SQLSTATE ", c.sqlstate, ")"));
  }
}

}  // namespace
}  // namespace taskd::pg
