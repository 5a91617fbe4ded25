// taskd's flags and signals on the real binary: each documented flag reaches
// the server (not only the option behind it), bad values are refused with
// exit 2 naming the flag, SIGHUP reloads tokens, SIGINT stops cleanly.
#include <signal.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/error_details.h"
#include "client/task_client.h"
#include "client/task_watch.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth.h"
#include "tests/taskd_process.h"
#include "tests/test_certificates.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using ::testing::HasSubstr;

class TaskdFlagsTest : public ::testing::Test {
 protected:
  testing::TaskdProcess::Options With(std::vector<std::string> flags) {
    return {.flags = std::move(flags), .db_path = dir_.File("taskd.db")};
  }

  // Runs taskd with `flags`, expecting it to refuse them: exit 2 and a
  // message on stderr containing `message`.
  void ExpectRefused(std::vector<std::string> flags,
                     const std::string& message) {
    testing::TaskdProcess taskd(With(flags));
    taskd.Launch();
    EXPECT_EQ(taskd.Wait(absl::Seconds(20)), 2)
        << absl::StrJoin(flags, " ") << "\n"
        << taskd.log();
    EXPECT_THAT(taskd.log(), HasSubstr(message)) << absl::StrJoin(flags, " ");
  }

  // Waits up to 10 s for a line of taskd's log that holds every one of
  // `needles`.
  static bool WaitForLog(testing::TaskdProcess& taskd,
                         std::vector<std::string> needles) {
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      for (absl::string_view line : absl::StrSplit(taskd.log(), '\n')) {
        bool all = true;
        for (const std::string& needle : needles) {
          all = all && absl::StrContains(line, needle);
        }
        if (all) return true;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  void WriteTokens(const std::string& token) {
    std::ofstream out(dir_.File("tokens"));
    out << Authorizer::HashToken(token) << " * admin\n";
  }

  static absl::Status ListAs(testing::TaskdProcess& taskd,
                             const std::string& token) {
    TaskClient::Options options;
    options.bearer_token = token;
    options.deadline = absl::Seconds(5);
    TaskClient client(taskd.NewChannel(), options);
    return client.List(tasks::v1::ListTasksRequest()).status();
  }

  testing::TempDir dir_;
};

TEST_F(TaskdFlagsTest, BadValuesAreRefusedNamingTheFlag) {
  ExpectRefused({"--max_batch=0"}, "--max_batch");
  ExpectRefused({"--read_connections=0"}, "--read_connections");
  ExpectRefused({"--task_cache_mib=-1"}, "--task_cache_mib");
  ExpectRefused({"--checkpoint_pages=0"}, "--checkpoint_pages");
  ExpectRefused({"--pg_poll_interval=1ms"}, "--pg_poll_interval");
  ExpectRefused({"--pg_connect_timeout=0s"}, "--pg_connect_timeout");
  ExpectRefused({"--pg_dead_peer_timeout=500ms"}, "--pg_dead_peer_timeout");
  ExpectRefused({"--pg_poll_interval=2h"}, "--pg_poll_interval");
  ExpectRefused({"--pg_connect_timeout=11m"}, "--pg_connect_timeout");
  ExpectRefused({"--pg_dead_peer_timeout=2h"}, "--pg_dead_peer_timeout");
  ExpectRefused({"--max_page_size=0"}, "--max_page_size");
  ExpectRefused({"--max_receive_bytes=10"}, "--max_receive_bytes");
  ExpectRefused({"--log_level=loud"}, "--log_level");
  ExpectRefused({"--tls_cert=" + dir_.File("x.pem")},
                "--tls_cert and --tls_key go together");
  ExpectRefused({"--tls_client_ca=" + dir_.File("ca.pem")},
                "--tls_client_ca needs --tls_cert and --tls_key");
  ExpectRefused(
      {"--tls_cert=" + dir_.File("no.pem"), "--tls_key=" + dir_.File("no.key")},
      "cannot read");
}

// --pg_connect_timeout reaches the connections: a PostgreSQL that accepts
// the connection and never answers (a listening socket nobody reads) makes
// taskd give up after the flag's 2 s, not after the default 5 s, and say
// why.
TEST_F(TaskdFlagsTest, PgConnectTimeoutBoundsTheWaitForASilentServer) {
  testing::LoopbackListener silent;
  ASSERT_GT(silent.port(), 0);
  testing::TaskdProcess::Options options = With({"--pg_connect_timeout=2s"});
  options.db_path =
      absl::StrCat("postgresql://taskd@127.0.0.1:", silent.port(), "/taskd");
  testing::TaskdProcess taskd(options);
  const absl::Time start = absl::Now();
  taskd.Launch();
  EXPECT_EQ(taskd.Wait(absl::Seconds(20)), 1) << taskd.log();
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(1900)) << taskd.log();
  EXPECT_LT(took, absl::Milliseconds(4500)) << taskd.log();
  EXPECT_THAT(taskd.log(), HasSubstr("cannot connect to PostgreSQL"));
  EXPECT_THAT(taskd.log(), HasSubstr("timeout expired"));
}

// Issue 12: the executor flags reach the server. A new task gets the
// default timeouts; --progress_interval=0 writes every progress report;
// --max_acquire_wait caps AcquireTask's wait; bad values are refused.
TEST_F(TaskdFlagsTest, ExecutorFlagsReachTheServer) {
  ExpectRefused({"--default_ack_timeout=-1s"}, "--default_ack_timeout");
  ExpectRefused({"--default_queue_timeout=50ms"}, "--default_queue_timeout");
  ExpectRefused({"--default_heartbeat_interval=400000h"},
                "--default_heartbeat_interval");
  ExpectRefused({"--default_exec_timeout=-5s"}, "--default_exec_timeout");
  ExpectRefused({"--max_acquire_wait=2h"}, "--max_acquire_wait");
  ExpectRefused({"--progress_interval=-1s"}, "--progress_interval");

  testing::TaskdProcess taskd(
      With({"--default_queue_timeout=1h", "--default_ack_timeout=7s",
            "--default_heartbeat_interval=3s", "--default_exec_timeout=2h",
            "--progress_interval=0s", "--max_acquire_wait=5s"}));
  ASSERT_TRUE(taskd.Start().ok()) << taskd.log();
  TaskClient client(taskd.NewChannel());
  tasks::v1::Task task;
  task.set_id("job");
  task.set_type("backup");
  absl::StatusOr<tasks::v1::Task> created = client.Create(task);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->queue_timeout().seconds(), 3600);
  EXPECT_EQ(created->ack_timeout().seconds(), 7);
  EXPECT_EQ(created->heart_beat_interval().seconds(), 3);
  EXPECT_EQ(created->exec_timeout().seconds(), 7200);
  // A task's own zero wins over the default.
  task.set_id("no-ack");
  task.mutable_ack_timeout()->set_seconds(0);
  EXPECT_FALSE(client.Create(task)->has_ack_timeout());

  absl::Status capped = client.Acquire("agent", "", absl::Seconds(6)).status();
  EXPECT_EQ(capped.code(), absl::StatusCode::kInvalidArgument) << capped;
  EXPECT_THAT(capped.message(), HasSubstr("5s"));
  absl::StatusOr<std::optional<tasks::v1::Task>> leased =
      client.Acquire("agent", "id = \"job\"", absl::Seconds(5));
  ASSERT_TRUE(leased.ok() && leased->has_value()) << leased.status();
  const std::string token = (*leased)->lease_token();
  absl::StatusOr<tasks::v1::Task> started = client.Start("job", token);
  ASSERT_TRUE(started.ok()) << started.status();
  // Progress interval 0: every new report is a revision.
  int64_t revision = started->revision();
  for (int i = 1; i <= 3; ++i) {
    tasks::v1::Task::Progress progress;
    progress.set_current(i);
    progress.set_total(3);
    ASSERT_TRUE(client.Heartbeat("job", token, &progress).ok());
    absl::StatusOr<tasks::v1::Task> now = client.Get("job");
    ASSERT_TRUE(now.ok());
    EXPECT_EQ(now->revision(), revision + 1);
    EXPECT_EQ(now->progress().current(), i);
    revision = now->revision();
  }
  EXPECT_EQ(taskd.Stop(SIGTERM), 0) << taskd.log();
}

// Issue 16: --retain_completed deletes a completed task once it is that
// old, as a DELETED change that watchers see, and counts it in /metrics;
// tasks not completed stay. --restore refuses what it cannot use.
TEST_F(TaskdFlagsTest, RetainCompletedDeletesOldCompletedTasksForWatchers) {
  ExpectRefused({"--retain_completed=500ms"}, "--retain_completed");
  ExpectRefused({"--retain_completed=-1s"}, "--retain_completed");
  ExpectRefused({"--restore=" + dir_.File("no-such-backup.db")},
                "cannot read the backup");

  testing::TaskdProcess taskd(
      With({"--retain_completed=2s", "--http_listen=127.0.0.1:0"}));
  ASSERT_TRUE(taskd.Start().ok()) << taskd.log();
  TaskClient client(taskd.NewChannel());
  tasks::v1::Task task;
  task.set_type("backup");
  absl::StatusOr<tasks::v1::Task> done = client.Create(task);
  absl::StatusOr<tasks::v1::Task> waiting = client.Create(task);
  ASSERT_TRUE(done.ok() && waiting.ok());

  tasks::v1::WatchTasksRequest request;
  request.set_start_revision(waiting->revision() + 1);
  TaskWatch watch(taskd.NewChannel(), request);
  std::vector<tasks::v1::TaskEvent> events;
  absl::Time deleted_at;
  std::atomic<bool> deleted{false};
  std::thread watching([&] {
    TaskWatch::Callbacks callbacks;
    callbacks.on_event = [&](const tasks::v1::TaskEvent& event) {
      events.push_back(event);
      if (event.type() == tasks::v1::TaskEvent::DELETED) {
        deleted_at = absl::Now();
        deleted = true;
        watch.Stop();
      }
    };
    (void)watch.Run(callbacks);
  });
  // An enqueued task cancelled is completed at once.
  absl::StatusOr<tasks::v1::Task> cancelled = client.Cancel(done->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  ASSERT_EQ(cancelled->state(), tasks::v1::Task::completed);
  const absl::Time completed = absl::Now();
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (!deleted.load() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  watch.Stop();
  watching.join();
  ASSERT_EQ(events.size(), 2u) << taskd.log();
  EXPECT_EQ(events[0].type(), tasks::v1::TaskEvent::UPDATED);
  EXPECT_EQ(events[1].type(), tasks::v1::TaskEvent::DELETED);
  EXPECT_EQ(events[1].task().id(), done->id());
  EXPECT_EQ(events[1].revision(), cancelled->revision() + 1);
  // Not before it was 2 s old (taskd stamps completedAt before this test's
  // clock read above, so the margin only errs towards passing late).
  EXPECT_GE(deleted_at - completed, absl::Milliseconds(1500));
  EXPECT_EQ(client.Get(done->id()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(client.Get(waiting->id()).ok());

  std::string metrics, err;
  testing::RunCommand(
      {"/usr/bin/curl", "-sS", "--max-time", "5",
       absl::StrCat("http://", taskd.serving_field("http"), "/metrics")},
      "", &metrics, &err);
  EXPECT_THAT(metrics, HasSubstr("taskd_retention_deleted_total 1"));
  EXPECT_EQ(taskd.Stop(SIGTERM), 0) << taskd.log();
}

TEST_F(TaskdFlagsTest, PlaintextOnANonLoopbackAddressNeedsInsecure) {
  testing::TaskdProcess::Options refused = With({});
  refused.listen = "0.0.0.0:0";
  testing::TaskdProcess taskd(refused);
  taskd.Launch();
  EXPECT_EQ(taskd.Wait(), 2) << taskd.log();
  EXPECT_THAT(taskd.log(), HasSubstr("--insecure"));

  testing::TaskdProcess::Options allowed = With({"--insecure"});
  allowed.listen = "0.0.0.0:0";
  testing::TaskdProcess insecure(allowed);
  absl::Status started = insecure.Start();
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_THAT(insecure.log(), HasSubstr("serving PLAINTEXT"));
  EXPECT_EQ(insecure.serving_field("tls"), "off");
  EXPECT_EQ(insecure.Stop(SIGTERM), 0) << insecure.log();
}

TEST_F(TaskdFlagsTest, TheStartUpLineSaysHowItServes) {
  testing::TaskdProcess open(With({}));
  ASSERT_TRUE(open.Start().ok()) << open.log();
  EXPECT_EQ(open.serving_field("sync"), "full");  // the default
  EXPECT_EQ(open.serving_field("auth"), "off");
  EXPECT_EQ(open.serving_field("tls"), "off");
  EXPECT_THAT(open.log(), HasSubstr("no --auth_tokens"));
  EXPECT_EQ(open.Stop(SIGINT), 0) << open.log();  // SIGINT as SIGTERM
  EXPECT_THAT(open.log(), HasSubstr("taskd stopped cleanly"));

  absl::StatusOr<testing::TestCertificates> pki =
      testing::TestCertificates::Make(dir_.path());
  ASSERT_TRUE(pki.ok()) << pki.status();
  WriteTokens("t");
  testing::TaskdProcess secured(
      With({"--sync=normal", "--auth_tokens=" + dir_.File("tokens"),
            "--tls_cert=" + pki->server_cert, "--tls_key=" + pki->server_key,
            "--tls_client_ca=" + pki->ca_cert, "--max_page_size=7"}));
  ASSERT_TRUE(secured.Start().ok()) << secured.log();
  EXPECT_EQ(secured.serving_field("sync"), "normal");
  EXPECT_EQ(secured.serving_field("auth"), "tokens");
  EXPECT_EQ(secured.serving_field("tls"), "mutual");
  EXPECT_EQ(secured.serving_field("max_page_size"), "7");
  EXPECT_THAT(secured.log(), ::testing::Not(HasSubstr("no --auth_tokens")));
}

// Issue 13: the HTTP listener's flags. It serves on --http_listen (the
// default is 127.0.0.1:8080, which --help says), is off when empty, obeys
// the loopback rule and --http_max_connections.
TEST_F(TaskdFlagsTest, HttpListenerFlags) {
  std::string out, err;
  testing::RunCommand({testing::TaskdPath(), "--help"}, "", &out, &err);
  EXPECT_THAT(out + err, HasSubstr("default: \"127.0.0.1:8080\""));

  testing::TaskdProcess off(With({"--http_listen="}));
  ASSERT_TRUE(off.Start().ok()) << off.log();
  EXPECT_EQ(off.serving_field("http"), "off");
  EXPECT_EQ(off.Stop(SIGTERM), 0);

  ExpectRefused({"--http_listen=0.0.0.0:0"}, "0.0.0.0:0");
  ExpectRefused({"--http_threads=0"}, "--http_threads");
  ExpectRefused({"--http_max_connections=0"}, "--http_max_connections");

  testing::TaskdProcess capped(
      With({"--http_listen=127.0.0.1:0", "--http_max_connections=1",
            "--http_threads=1"}));
  ASSERT_TRUE(capped.Start().ok()) << capped.log();
  const std::string http = capped.serving_field("http");
  const std::string url =
      absl::StrCat("http://", http, "/tasks.v1.TaskService/CountTasks");
  // One connection held open (an SSE stream)...
  // (Subprocess reads stderr: curl's output goes there.)
  testing::Subprocess held({"/bin/sh", "-c",
                            absl::StrCat("exec /usr/bin/curl -sN http://", http,
                                         "/v1/tasks:counts >&2")});
  ASSERT_FALSE(held.WaitForLine("event: counts", absl::Seconds(10)).empty())
      << held.output();
  // ...so a second is closed at once, with no answer.
  int rc =
      testing::RunCommand({"/usr/bin/curl", "-sS", "--max-time", "5", "-H",
                           "Content-Type: application/json", "-d", "{}", url},
                          "", &out, &err);
  EXPECT_NE(rc, 0) << out;
  held.Signal(SIGTERM);
  held.Wait(absl::Seconds(5));
  // Once it is gone, calls are served again.
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    rc =
        testing::RunCommand({"/usr/bin/curl", "-sS", "-H",
                             "Content-Type: application/json", "-d", "{}", url},
                            "", &out, &err);
    served = rc == 0 && out == "{}";
    if (!served) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(served) << out << err;
  EXPECT_EQ(capped.Stop(SIGTERM), 0) << capped.log();
}

// The listening sockets on `port` (state 0A = LISTEN; gRPC may bind an
// IPv6 socket with a v4-mapped address, listed in /proc/net/tcp6).
int ListeningSockets(int port) {
  const std::string local =
      absl::StrCat(":", absl::AsciiStrToUpper(absl::StrFormat("%04x", port)));
  int sockets = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream tcp(table);
    for (std::string line; std::getline(tcp, line);) {
      std::vector<std::string> fields =
          absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (fields.size() > 3 && absl::EndsWith(fields[1], local) &&
          fields[3] == "0A") {
        ++sockets;
      }
    }
  }
  return sockets;
}

// A taskd's port is its alone: gRPC would set SO_REUSEPORT and let a
// second process bind the same port and take some of the connections
// (another taskd on another database: clients would see two different
// services at random). The second is refused instead.
TEST_F(TaskdFlagsTest, TheListeningPortIsNotShared) {
  testing::TaskdProcess one(With({}));
  ASSERT_TRUE(one.Start().ok()) << one.log();
  EXPECT_EQ(ListeningSockets(one.port()), 1);
  testing::TaskdProcess::Options second = With({});
  second.db_path = dir_.File("second.db");
  second.listen = one.address();
  testing::TaskdProcess intruder(second);
  intruder.Launch();
  EXPECT_NE(intruder.Wait(absl::Seconds(20)), 0) << intruder.log();
  EXPECT_THAT(intruder.log(), HasSubstr("cannot listen on"));
  EXPECT_EQ(ListeningSockets(one.port()), 1);
}

TEST_F(TaskdFlagsTest, SighupReloadsTheTokenFileAndABadFileKeepsTheOld) {
  WriteTokens("first");
  testing::TaskdProcess taskd(
      With({"--sync=normal", "--auth_tokens=" + dir_.File("tokens")}));
  ASSERT_TRUE(taskd.Start().ok()) << taskd.log();
  EXPECT_TRUE(ListAs(taskd, "first").ok());
  EXPECT_EQ(ListAs(taskd, "second").code(), absl::StatusCode::kUnauthenticated);

  WriteTokens("second");
  taskd.Signal(SIGHUP);
  ASSERT_TRUE(WaitForLog(taskd, {"SIGHUP: token file reloaded"}))
      << taskd.log();
  EXPECT_TRUE(ListAs(taskd, "second").ok());
  EXPECT_EQ(ListAs(taskd, "first").code(), absl::StatusCode::kUnauthenticated);

  {
    std::ofstream broken(dir_.File("tokens"));
    broken << "this is not a token line\n";
  }
  taskd.Signal(SIGHUP);
  ASSERT_TRUE(WaitForLog(taskd, {"token file not reloaded"})) << taskd.log();
  EXPECT_TRUE(ListAs(taskd, "second").ok()) << "the old tokens stay";
  EXPECT_EQ(taskd.Stop(SIGTERM), 0) << taskd.log();
}

TEST_F(TaskdFlagsTest, LimitFlagsReachTheServer) {
  testing::TaskdProcess taskd(With({"--sync=normal", "--max_receive_bytes=2048",
                                    "--max_watchers=1", "--log_level=debug"}));
  ASSERT_TRUE(taskd.Start().ok()) << taskd.log();
  TaskClient client(taskd.NewChannel());
  // A request over --max_receive_bytes.
  absl::StatusOr<tasks::v1::Task> big = client.Get(std::string(4096, 'x'));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted)
      << big.status();
  // gRPC refuses it before taskd sees it: no reason (README, Errors).
  EXPECT_EQ(ReasonOf(big.status()), "") << big.status();
  // A second stream beyond --max_watchers=1.
  grpc::ClientContext first_context, second_context;
  tasks::v1::WatchTasksRequest request;
  auto first = client.stub()->WatchTasks(&first_context, request);
  tasks::v1::WatchTasksResponse response;
  ASSERT_TRUE(first->Read(&response));  // open: its first progress
  auto second = client.stub()->WatchTasks(&second_context, request);
  EXPECT_FALSE(second->Read(&response));
  EXPECT_EQ(second->Finish().error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  first_context.TryCancel();
  first->Finish();
  // --log_level=debug logs every call, successes too.
  ASSERT_TRUE(client.List(tasks::v1::ListTasksRequest()).ok());
  EXPECT_TRUE(WaitForLog(
      taskd, {"call method=/tasks.v1.TaskService/ListTasks", "status=OK"}))
      << taskd.log();
}

TEST_F(TaskdFlagsTest, TheCallLogNamesTheCallersTenant) {
  const std::string tenant = "cccccccc-0000-4000-8000-000000000003";
  {
    std::ofstream out(dir_.File("tokens"));
    out << Authorizer::HashToken("scoped") << " " << tenant << " viewer\n";
    out << Authorizer::HashToken("root") << " * admin\n";
  }
  testing::TaskdProcess taskd(
      With({"--sync=normal", "--auth_tokens=" + dir_.File("tokens")}));
  ASSERT_TRUE(taskd.Start().ok()) << taskd.log();
  TaskClient::Options options;
  options.bearer_token = "scoped";
  TaskClient scoped(taskd.NewChannel(), options);
  // Failed calls are logged at the default level: a viewer may not create.
  EXPECT_EQ(scoped.Create(tasks::v1::Task()).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(WaitForLog(taskd, {"status=PERMISSION_DENIED",
                                 absl::StrCat("tenant=", tenant, " ")}))
      << taskd.log();
  options.bearer_token = "root";
  TaskClient root(taskd.NewChannel(), options);
  EXPECT_EQ(root.Get("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(WaitForLog(taskd, {"status=NOT_FOUND", "tenant=* "}))
      << taskd.log();
  options.bearer_token = "nobody";
  TaskClient nobody(taskd.NewChannel(), options);
  EXPECT_EQ(nobody.List(tasks::v1::ListTasksRequest()).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(WaitForLog(taskd, {"status=UNAUTHENTICATED", "tenant=- "}))
      << taskd.log();
}

}  // namespace
}  // namespace taskd
