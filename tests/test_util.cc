#include "tests/test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace taskd::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern =
      std::string(base ? base : "/tmp") + "/taskd-test-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr) throw std::runtime_error("mkdtemp");
  path_ = buffer.data();
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

Subprocess::Subprocess(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  // stderr is read only when the test asks (WaitForLine, ReadAvailable,
  // Wait): room for 1 MiB of log meanwhile (Linux's default limit for an
  // unprivileged pipe), so that a chatty child does not block on a full
  // pipe as soon as 64 KiB are waiting.
  (void)fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // If the test dies (a crash, a kill by ctest's timeout) the child goes
    // with it rather than living on, holding ports and database locks.
    // (The signal follows the forking thread: tests start children from
    // their main thread.)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    dup2(fds[1], STDERR_FILENO);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, STDIN_FILENO);
    dup2(devnull, STDOUT_FILENO);
    // The test runner may block signals; the child must see SIGTERM.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  stderr_fd_ = fds[0];
}

Subprocess::~Subprocess() {
  if (!exited_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    Wait(absl::Seconds(10));
  }
  if (stderr_fd_ >= 0) close(stderr_fd_);
}

std::string Subprocess::WaitForLine(const std::string& needle,
                                    absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    size_t found = output_.find(needle, scanned_);
    if (found != std::string::npos) {
      size_t begin = output_.rfind('\n', found);
      begin = begin == std::string::npos ? 0 : begin + 1;
      size_t end = output_.find('\n', found);
      if (end != std::string::npos) {
        scanned_ = end + 1;
        return output_.substr(begin, end - begin);
      }
    }
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return "";
    pollfd pfd{stderr_fd_, POLLIN, 0};
    int ready =
        poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready <= 0) continue;
    char buffer[4096];
    ssize_t n = read(stderr_fd_, buffer, sizeof(buffer));
    if (n <= 0) return "";
    output_.append(buffer, n);
  }
}

void Subprocess::ReadAvailable() {
  char buffer[4096];
  pollfd pfd{stderr_fd_, POLLIN, 0};
  while (poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN) != 0) {
    ssize_t n = read(stderr_fd_, buffer, sizeof(buffer));
    if (n <= 0) return;
    output_.append(buffer, n);
  }
}

void Subprocess::Signal(int signal) {
  if (!exited_) kill(pid_, signal);
}

int Subprocess::Wait(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exited_ = true;
      // Drain what is left of stderr for the test's messages.
      char buffer[4096];
      fcntl(stderr_fd_, F_SETFL, O_NONBLOCK);
      ssize_t n;
      while ((n = read(stderr_fd_, buffer, sizeof(buffer))) > 0) {
        output_.append(buffer, n);
      }
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (absl::Now() > deadline) return -1;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

LoopbackListener::LoopbackListener() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), size) == 0 &&
      ::listen(fd_, 8) == 0 &&
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &size) == 0) {
    port_ = ntohs(address.sin_port);
  }
}

LoopbackListener::~LoopbackListener() {
  if (fd_ >= 0) ::close(fd_);
}

std::string LoopbackListener::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

int FreeTcpPort() { return LoopbackListener().port(); }

int RunCommand(const std::vector<std::string>& argv,
               const std::string& stdin_text, std::string* out,
               std::string* err) {
  std::string in_path, out_path, err_path;
  TempDir dir;
  in_path = dir.File("in");
  out_path = dir.File("out");
  err_path = dir.File("err");
  FILE* in = fopen(in_path.c_str(), "w");
  fwrite(stdin_text.data(), 1, stdin_text.size(), in);
  fclose(in);
  // posix_spawn, not fork: a fork runs the pthread_atfork handlers of
  // every library in the test (gRPC's among them), which may stop a client
  // busy on other threads; a spawned child runs none.
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, STDIN_FILENO, in_path.c_str(),
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&files, STDERR_FILENO, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int spawned =
      posix_spawn(&pid, args[0], &files, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  if (spawned != 0) return 127;
  int status = 0;
  waitpid(pid, &status, 0);
  auto slurp = [](const std::string& path) {
    std::string text;
    FILE* f = fopen(path.c_str(), "r");
    if (f == nullptr) return text;
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), f)) > 0)
      text.append(buffer, n);
    fclose(f);
    return text;
  };
  if (out != nullptr) *out = slurp(out_path);
  if (err != nullptr) *err = slurp(err_path);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string TaskdPath() { return TASKD_BINARY; }
std::string TaskctlPath() { return TASKCTL_BINARY; }

std::ostream& operator<<(std::ostream& os, const CommandResult& result) {
  return os << "exit " << result.rc << "\nstdout: " << result.out
            << "\nstderr: " << result.err;
}

CommandResult RunTaskctl(const std::vector<std::string>& args,
                         const std::vector<std::string>& env,
                         absl::Duration stop_after) {
  std::vector<std::string> argv = {"/usr/bin/env", "-u", "TASKD_TOKEN", "-u",
                                   "TASKD_SERVER"};
  argv.insert(argv.end(), env.begin(), env.end());
  if (stop_after > absl::ZeroDuration()) {
    argv.push_back("/usr/bin/timeout");
    argv.push_back(absl::StrCat(absl::ToDoubleSeconds(stop_after)));
  }
  argv.push_back(TaskctlPath());
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult result;
  result.rc = RunCommand(argv, "", &result.out, &result.err);
  return result;
}

std::string JsonField(const std::string& json, const std::string& key) {
  // Pretty ("key": "v") or compact ("key":"v") JSON alike.
  const std::string needle = absl::StrCat("\"", key, "\":");
  size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  at += needle.size();
  while (at < json.size() && json[at] == ' ') ++at;
  if (at >= json.size() || json[at] != '"') return "";
  ++at;
  return json.substr(at, json.find('"', at) - at);
}

}  // namespace taskd::testing
