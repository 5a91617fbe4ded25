#include "tests/postgres_server.h"

#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/test_util.h"

namespace taskd::testing {
namespace {

constexpr char kDefaultBindir[] = "/usr/lib/postgresql/15/bin";
bool IsRoot() { return ::geteuid() == 0; }

}  // namespace

bool PostgresRequired() {
  const char* required = std::getenv("TASKD_REQUIRE_POSTGRES");
  return required != nullptr && std::string(required) == "1";
}

PostgresServer::~PostgresServer() {
  if (running_) {
    (void)Run({bindir_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate",
               "-w", "stop"});
  }
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

absl::Status PostgresServer::Run(const std::vector<std::string>& argv) const {
  std::vector<std::string> command;
  if (IsRoot()) command = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  command.insert(command.end(), argv.begin(), argv.end());
  std::string out;
  std::string err;
  const int rc = RunCommand(command, "", &out, &err);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat(
        absl::StrJoin(command, " "), " exited with ", rc, ":\n", out, err));
  }
  return absl::OkStatus();
}

absl::Status PostgresServer::Start() {
  if (running_) return absl::OkStatus();
  if (dir_.empty()) {
    const char* bindir = std::getenv("TASKD_PG_BINDIR");
    bindir_ = bindir != nullptr ? bindir : kDefaultBindir;
    if (::access((bindir_ + "/initdb").c_str(), X_OK) != 0) {
      return absl::NotFoundError(
          absl::StrCat("PostgreSQL is not installed: no ", bindir_,
                       "/initdb (Debian: apt-get install postgresql-15)"));
    }
    // Short, for the socket path's limit of about 100 bytes.
    char pattern[] = "/tmp/taskd-pg-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
      return absl::InternalError("mkdtemp failed");
    }
    dir_ = pattern;
    if (IsRoot()) {
      const passwd* postgres = ::getpwnam("postgres");
      if (postgres == nullptr) {
        return absl::NotFoundError(
            "PostgreSQL is not installed: no postgres user");
      }
      if (::chown(dir_.c_str(), postgres->pw_uid, postgres->pw_gid) != 0) {
        return absl::InternalError(absl::StrCat("chown ", dir_));
      }
    }
    absl::Status created =
        Run({bindir_ + "/initdb", "-D", dir_ + "/data", "-A", "trust", "-U",
             "taskd", "-E", "UTF8", "--locale=C", "--no-sync"});
    if (!created.ok()) return created;
  }
  const std::string listen = options_.tcp ? "127.0.0.1" : "''";
  absl::Status started;
  // With TCP, a free port is chosen at the first start and kept: a port
  // that was free a moment ago may be taken by the time the server binds
  // it (another test's connection), so the first start tries a few.
  const bool choose_port = options_.tcp && !tcp_port_chosen_;
  for (int attempt = 0; attempt < (choose_port ? 5 : 1); ++attempt) {
    if (choose_port) {
      port_ = FreeTcpPort();
      if (port_ == 0) {
        return absl::InternalError("no free TCP port on 127.0.0.1");
      }
    }
    started = Run({bindir_ + "/pg_ctl", "-D", dir_ + "/data", "-l",
                   dir_ + "/log", "-o",
                   absl::StrCat("-k ", dir_, " -p ", port_,
                                " -c listen_addresses=", listen),
                   "-w", "start"});
    if (started.ok()) break;
  }
  if (!started.ok()) return started;
  tcp_port_chosen_ = options_.tcp;
  running_ = true;
  // The database, once (createdb fails harmlessly on a restart).
  static_cast<void>(Run({bindir_ + "/createdb", "-h", dir_, "-p",
                         absl::StrCat(port_), "-U", "taskd", "taskd"}));
  return absl::OkStatus();
}

absl::Status PostgresServer::Stop() {
  if (!running_) return absl::OkStatus();
  absl::Status stopped = Run(
      {bindir_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "fast", "-w", "stop"});
  if (stopped.ok()) running_ = false;
  return stopped;
}

PostgresServer* PostgresTest::server_ = nullptr;
absl::Status* PostgresTest::start_ = nullptr;

void PostgresTest::SetUpTestSuite() {
  server_ = new PostgresServer;
  start_ = new absl::Status(server_->Start());
}

void PostgresTest::TearDownTestSuite() {
  delete server_;
  server_ = nullptr;
  delete start_;
  start_ = nullptr;
}

void PostgresTest::SetUp() { TASKD_SKIP_WITHOUT_POSTGRES(*start_); }

std::unique_ptr<pg::Connection> PostgresTest::Connect() {
  pg::Connection::Options options;
  options.uri = server_->uri();
  absl::StatusOr<std::unique_ptr<pg::Connection>> db =
      pg::Connection::Open(options);
  EXPECT_TRUE(db.ok()) << db.status();
  return db.ok() ? std::move(*db) : nullptr;
}

std::string PostgresServer::uri(const std::string& database) const {
  return absl::StrCat("postgresql:///", database, "?host=", dir_,
                      "&port=", port_, "&user=taskd");
}

std::string PostgresServer::tcp_uri(const std::string& database) const {
  return absl::StrCat("postgresql://taskd@127.0.0.1:", port_, "/", database);
}

absl::StatusOr<PostgresServer*> SharedPostgresServer() {
  // Never destroyed before exit; its destructor at exit stops the server.
  static PostgresServer* server = new PostgresServer();
  static const absl::Status* started = new absl::Status(server->Start());
  static const int cleanup = std::atexit([] { delete server; });
  (void)cleanup;
  if (!started->ok()) return *started;
  return server;
}

absl::StatusOr<std::string> NewPostgresDatabase() {
  absl::StatusOr<PostgresServer*> server = SharedPostgresServer();
  if (!server.ok()) return server.status();
  static std::atomic<int> next{0};
  const std::string name = absl::StrCat("test_", ::getpid(), "_", next++);
  pg::Connection::Options options;
  options.uri = (*server)->uri();
  absl::StatusOr<std::unique_ptr<pg::Connection>> admin =
      pg::Connection::Open(options);
  if (!admin.ok()) return admin.status();
  if (absl::Status s =
          (*admin)->ExecScript(absl::StrCat("CREATE DATABASE ", name));
      !s.ok()) {
    return s;
  }
  return (*server)->uri(name);
}

}  // namespace taskd::testing
