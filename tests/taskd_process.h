// TaskdProcess: the real taskd executable as a child process on a free
// port, for tests of the binary itself: flags, signals, kill -9, restarts
// on the same database, taskctl against it.
//
//   testing::TaskdProcess::Options options;
//   options.db_path = dir.File("t.db");
//   options.flags = {"--sync=normal"};
//   testing::TaskdProcess taskd(options);
//   absl::Status started = taskd.Start();
//   ASSERT_TRUE(started.ok()) << started;  // the message holds taskd's log
//   TaskClient client(taskd.NewChannel());
//   ...
//   EXPECT_EQ(taskd.Stop(SIGTERM), 0) << taskd.log();
//
// The child dies with the test process (PR_SET_PDEATHSIG) and is killed
// when the object goes. Not thread-safe.
#ifndef TASKD_TESTS_TASKD_PROCESS_H_
#define TASKD_TESTS_TASKD_PROCESS_H_

#include <grpcpp/channel.h>
#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tests/test_util.h"

namespace taskd::testing {

class TaskdProcess {
 public:
  struct Options {
    // Further flags, after --listen and --db: "--sync=normal",
    // "--auth_tokens=FILE", "--metrics-listen=127.0.0.1:0", ...
    std::vector<std::string> flags;
    // --db; empty: no --db flag (taskd's default, ./taskd.db).
    std::string db_path;
    // --listen; port 0 lets taskd pick a free port, which Start() reads
    // back from its log.
    std::string listen = "127.0.0.1:0";
    // How long Start() waits for taskd to say it serves.
    absl::Duration start_timeout = absl::Seconds(30);
    // The executable; empty: the taskd of this build (TaskdPath()).
    std::string binary;
  };

  explicit TaskdProcess(Options options);
  TaskdProcess(const TaskdProcess&) = delete;
  TaskdProcess& operator=(const TaskdProcess&) = delete;
  ~TaskdProcess();  // SIGKILLs the child if it still runs

  // Launches taskd and waits for its "taskd serving" log line; then port(),
  // address() and serving_field() are known. If taskd exits first or does
  // not serve within options.start_timeout: FailedPrecondition (exited) or
  // DeadlineExceeded, with its log in the message; the child is left as it
  // is (Wait() for the exit status). Once a child has exited, Start()
  // launches a fresh one with the same options (the same database).
  absl::Status Start();
  // Launches taskd without waiting for it to serve (to kill it while it
  // starts, or to see it refuse flags: Wait(), log()).
  void Launch();

  // Sends `signal` and waits up to `timeout` for the exit. Returns the exit
  // status, 128 + the signal's number if a signal ended it, or -1 on
  // timeout (or if never launched).
  int Stop(int signal = SIGTERM, absl::Duration timeout = absl::Seconds(20));
  // Stop(SIGKILL).
  int Kill(absl::Duration timeout = absl::Seconds(20)) {
    return Stop(SIGKILL, timeout);
  }
  // Sends `signal` without waiting.
  void Signal(int signal);
  // Waits for the exit; the exit status as Stop() returns it.
  int Wait(absl::Duration timeout = absl::Seconds(20));

  // The port taskd serves on; 0 until Start() succeeded.
  int port() const { return port_; }
  // host:port to dial: the --listen host (127.0.0.1 for a wildcard) and
  // port().
  std::string address() const;
  // A plaintext channel to address(), on a connection of its own.
  std::shared_ptr<grpc::Channel> NewChannel() const;
  // A value from the "taskd serving" line ("revision", "metrics", "tls",
  // "auth", ...); "" if there is no such key.
  std::string serving_field(absl::string_view key) const;
  // The revision taskd said it started at; -1 before Start().
  int64_t start_revision() const;
  pid_t pid() const;
  // What taskd wrote to stderr (its log) so far.
  const std::string& log();

 private:
  const Options options_;
  std::unique_ptr<Subprocess> process_;
  std::string serving_line_;
  int port_ = 0;
};

}  // namespace taskd::testing

#endif  // TASKD_TESTS_TASKD_PROCESS_H_
