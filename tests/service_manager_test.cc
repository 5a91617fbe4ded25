// taskd under a service manager, on the real binary: the sd_notify messages
// a Type=notify unit waits for (READY=1 only once the ports accept calls,
// STOPPING=1 at SIGTERM), with this test as the service manager's end of
// $NOTIFY_SOCKET; and the shipped flag file (packaging/taskd.flags) as the
// unit's --flagfile reads it.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/task_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/taskd_process.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The service manager's end: a Unix datagram socket at `path`.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, sizeof(address.sun_path) - 1);
    bound_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&address),
                              sizeof(address)) == 0;
  }
  ~NotifySocket() {
    if (fd_ >= 0) close(fd_);
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  bool bound() const { return bound_; }

  // The next datagram, or "" if none comes within `timeout`.
  std::string Receive(absl::Duration timeout) {
    pollfd pfd{fd_, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <=
        0) {
      return "";
    }
    char buffer[4096];
    ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, n) : "";
  }

 private:
  int fd_ = -1;
  bool bound_ = false;
};

// Sets an environment variable for the children started meanwhile.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { unsetenv(name_); }

 private:
  const char* name_;
};

// A field (key=value) of the "taskd serving" line in `log`; "" if none.
std::string ServingField(const std::string& log, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::StrContains(line, "taskd serving")) continue;
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      if (absl::ConsumePrefix(&field, absl::StrCat(key, "="))) {
        return std::string(field);
      }
    }
  }
  return "";
}

bool AcceptsTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  bool ok =
      connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return ok;
}

class ServiceManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { unsetenv("NOTIFY_SOCKET"); }
  testing::TaskdProcess::Options Options(std::vector<std::string> flags = {}) {
    testing::TaskdProcess::Options options;
    options.flags = std::move(flags);
    options.db_path = dir_.File("taskd.db");
    return options;
  }
  testing::TempDir dir_;
};

TEST_F(ServiceManagerTest, ReadyOnceServingStoppingAtSigterm) {
  NotifySocket notify(dir_.File("notify"));
  ASSERT_TRUE(notify.bound());
  testing::TaskdProcess taskd(Options());
  {
    ScopedEnv env("NOTIFY_SOCKET", dir_.File("notify"));
    taskd.Launch();
  }
  const std::string ready = notify.Receive(absl::Seconds(30));
  ASSERT_EQ(ready, "READY=1") << taskd.log();

  // READY=1 promises that calls work now: no retry, no wait_for_ready.
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(ServingField(taskd.log(), "port"), &port))
      << "the serving line comes before READY=1:\n"
      << taskd.log();
  {  // (An idle connection left open would slow taskd's stop down.)
    TaskClient::Options options;
    options.deadline = absl::Seconds(5);
    TaskClient client(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                          grpc::InsecureChannelCredentials()),
                      options);
    EXPECT_TRUE(client.List(tasks::v1::ListTasksRequest()).ok());
  }
  std::string http = ServingField(taskd.log(), "http");
  int http_port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(http.substr(http.rfind(':') + 1), &http_port))
      << http;
  EXPECT_TRUE(AcceptsTcp(http_port));

  // Nothing more until the shutdown starts (SIGHUP is no reason to talk).
  taskd.Signal(SIGHUP);
  EXPECT_EQ(notify.Receive(absl::Milliseconds(300)), "");
  taskd.Signal(SIGTERM);
  EXPECT_EQ(notify.Receive(absl::Seconds(20)), "STOPPING=1") << taskd.log();
  EXPECT_EQ(taskd.Wait(), 0) << taskd.log();
  EXPECT_THAT(taskd.log(), Not(HasSubstr("cannot notify")));
}

TEST_F(ServiceManagerTest, NoServiceManagerNoMessages) {
  testing::TaskdProcess taskd(Options());
  absl::Status started = taskd.Start();
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_EQ(taskd.Stop(SIGTERM), 0);
  EXPECT_THAT(taskd.log(), Not(HasSubstr("service manager")));
}

// A $NOTIFY_SOCKET nobody listens on (a stale environment) costs a
// warning, not the service.
TEST_F(ServiceManagerTest, DeafServiceManagerOnlyWarns) {
  testing::TaskdProcess taskd(Options());
  {
    ScopedEnv env("NOTIFY_SOCKET", dir_.File("nobody-listens"));
    absl::Status started = taskd.Start();
    ASSERT_TRUE(started.ok()) << started;
  }
  EXPECT_TRUE(
      TaskClient(taskd.NewChannel()).List(tasks::v1::ListTasksRequest()).ok());
  EXPECT_EQ(taskd.Stop(SIGTERM), 0) << taskd.log();
  EXPECT_THAT(taskd.log(),
              HasSubstr("cannot notify the service manager (READY=1)"));
}

// The unit runs `taskd --flagfile=/etc/taskd/taskd.flags`: the shipped file,
// comments and all, is one Abseil 20220623 accepts. Flags after it win
// (here --db, which the file sets to /var/lib/taskd/taskd.db).
TEST_F(ServiceManagerTest, ShippedFlagFileParses) {
  testing::TaskdProcess::Options options;
  options.flags = {"--flagfile=" TASKD_SOURCE_DIR "/packaging/taskd.flags",
                   "--db=" + dir_.File("flagfile.db")};
  testing::TaskdProcess taskd(options);
  absl::Status started = taskd.Start();
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_EQ(taskd.serving_field("db"), dir_.File("flagfile.db"));
  EXPECT_EQ(taskd.serving_field("sync"), "full");
  EXPECT_EQ(taskd.Stop(SIGTERM), 0) << taskd.log();
}

}  // namespace
}  // namespace taskd
