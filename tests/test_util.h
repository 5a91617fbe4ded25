// Helpers shared by the tests: temporary directories and child processes.
#ifndef TASKD_TESTS_TEST_UTIL_H_
#define TASKD_TESTS_TEST_UTIL_H_

#include <sys/types.h>

#include <ostream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace taskd::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on
// destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A child process whose stderr is captured.
class Subprocess {
 public:
  // Starts argv[0] (a path) with the arguments.
  explicit Subprocess(const std::vector<std::string>& argv);
  ~Subprocess();  // SIGKILLs the child if it still runs
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  // Reads stderr until a line contains `needle` or `timeout` passes; returns
  // that line, or "" on timeout or end of output.
  std::string WaitForLine(const std::string& needle, absl::Duration timeout);
  void Signal(int signal);
  // Waits for exit; returns the exit status (128 + signal if killed), or -1
  // on timeout.
  int Wait(absl::Duration timeout);
  // Reads what stderr holds now, without waiting.
  void ReadAvailable();
  // Everything read from stderr so far.
  const std::string& output() const { return output_; }

 private:
  pid_t pid_ = -1;
  int stderr_fd_ = -1;
  bool exited_ = false;
  std::string output_;
  size_t scanned_ = 0;
};

// A TCP socket listening on 127.0.0.1, on a port the kernel chose; closed
// on destruction. The kernel accepts connections into its backlog and
// nothing answers them: a server that never speaks, or a port held so that
// nothing else can bind it.
class LoopbackListener {
 public:
  LoopbackListener();
  ~LoopbackListener();
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;

  // 0 if the socket could not be made.
  int port() const { return port_; }
  // "127.0.0.1:<port>".
  std::string address() const;

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A port of 127.0.0.1 that nothing listens on now (a LoopbackListener's,
// closed again); 0 if none was found.
int FreeTcpPort();

// Runs a command to completion and returns its exit status; stdout goes to
// *out (if not null), stderr to *err.
int RunCommand(const std::vector<std::string>& argv,
               const std::string& stdin_text, std::string* out,
               std::string* err);

// The directory holding the test binary, where CMake also puts taskd and
// taskctl paths (passed by compile definitions).
std::string TaskdPath();
std::string TaskctlPath();

// How a command ended: its exit status (as RunCommand's) and what it printed.
struct CommandResult {
  int rc = -1;
  std::string out;
  std::string err;
};
std::ostream& operator<<(std::ostream& os, const CommandResult& result);

// Runs taskctl with `args`. Of the caller's environment, TASKD_TOKEN and
// TASKD_SERVER are left out; `env` (NAME=VALUE) is added. A `stop_after`
// above zero ends it then with SIGTERM (for `watch`, which runs until
// stopped): its exit status is then 124.
CommandResult RunTaskctl(const std::vector<std::string>& args,
                         const std::vector<std::string>& env = {},
                         absl::Duration stop_after = absl::ZeroDuration());

// The string value of the first `"key": "value"` in `json` (taskctl's -o
// json output); "" if there is none.
std::string JsonField(const std::string& json, const std::string& key);

// Waits (in real time, up to 20 s) for `condition`; whether it came true.
template <typename Condition>
bool Eventually(Condition condition) {
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (!condition()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

}  // namespace taskd::testing

#endif  // TASKD_TESTS_TEST_UTIL_H_
