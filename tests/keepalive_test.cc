// HTTP/2 keepalive on the server (TaskServerOptions::keepalive_*), seen
// through a TCP relay between client and taskd that counts the bytes
// passing and can freeze (stop forwarding while keeping both connections
// open, like a peer that vanished behind a NAT):
//   - over an idle watch the server keeps pinging, so NATs and proxies see
//     traffic for as long as the watch is open, not just for the first pings;
//   - a peer that stops answering is dropped after keepalive_timeout, and its
//     stream closed, so dead watchers do not hold server resources.
#include <arpa/inet.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

// Accepts one connection on a free loopback port and relays it to
// 127.0.0.1:`target_port`, both ways, until destroyed.
class Relay {
 public:
  explicit Relay(int target_port) : target_port_(target_port) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(
        bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
        0);
    socklen_t size = sizeof(address);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
    EXPECT_EQ(listen(listener_, 1), 0);
    thread_ = std::thread([this] { Run(); });
  }
  ~Relay() {
    stop_ = true;
    thread_.join();
    for (int fd : {listener_, client_, server_}) {
      if (fd >= 0) close(fd);
    }
  }

  int port() const { return port_; }
  // Stops forwarding (bytes wait in the kernel's buffers); both sides keep
  // their connections.
  void Freeze() { frozen_ = true; }
  int64_t bytes_to_client() const { return to_client_.load(); }

 private:
  void Run() {
    pollfd accept_fd{listener_, POLLIN, 0};
    while (!stop_ && poll(&accept_fd, 1, 50) <= 0) {
    }
    if (stop_) return;
    client_ = accept(listener_, nullptr, nullptr);
    server_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (connect(server_, reinterpret_cast<sockaddr*>(&address),
                sizeof(address)) != 0) {
      return;
    }
    char buffer[16384];
    while (!stop_) {
      if (frozen_) {
        absl::SleepFor(absl::Milliseconds(20));
        continue;
      }
      pollfd fds[2] = {{client_, POLLIN, 0}, {server_, POLLIN, 0}};
      if (poll(fds, 2, 20) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP)) == 0) continue;
        ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
        if (n <= 0) return;  // a side closed
        int to = i == 0 ? server_ : client_;
        if (write(to, buffer, static_cast<size_t>(n)) != n) return;
        if (i == 1) to_client_.fetch_add(n);
      }
    }
  }

  const int target_port_;
  int listener_ = -1;
  int client_ = -1;
  int server_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> frozen_{false};
  std::atomic<int64_t> to_client_{0};
  std::thread thread_;
};

class KeepaliveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TaskServerOptions options;
    options.store.path = dir_.File("taskd.db");
    options.store.synchronous_full = false;
    options.keepalive_time = absl::Milliseconds(300);
    options.keepalive_timeout = absl::Milliseconds(500);
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
    // (taskd_.channel, direct, stays unused and so unconnected.)
    relay_ = std::make_unique<Relay>(taskd_.port());
    // A client that never pings on its own: what passes is the server's.
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", relay_->port()),
                                   grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    relay_.reset();
    taskd_.Stop(absl::Seconds(2));
  }

  // Opens a watch and reads its first (progress) response.
  void OpenWatch() {
    stub_ = tasks::v1::TaskService::NewStub(channel_);
    reader_ = stub_->WatchTasks(&context_, tasks::v1::WatchTasksRequest());
    tasks::v1::WatchTasksResponse first;
    ASSERT_TRUE(reader_->Read(&first));
    ASSERT_EQ(taskd_.server->watch_hub()->open_watchers(), 1u);
  }

  testing::TempDir dir_;
  testing::InProcessTaskd taskd_;
  std::unique_ptr<Relay> relay_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<tasks::v1::TaskService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<tasks::v1::WatchTasksResponse>> reader_;
};

// An idle watch carries no data; the server's pings (every keepalive_time)
// are what keeps NATs and proxies from forgetting the connection. (With
// keepalive_time set to an hour both tests here fail.)
TEST_F(KeepaliveTest, AnIdleWatchKeepsSeeingPings) {
  OpenWatch();
  absl::SleepFor(absl::Seconds(2));
  int64_t before = relay_->bytes_to_client();
  absl::SleepFor(absl::Seconds(2));
  // Ping frames are 17 bytes; several keepalive intervals have passed.
  EXPECT_GE(relay_->bytes_to_client() - before, 2 * 17)
      << "the server stopped pinging an idle connection";
  EXPECT_EQ(taskd_.server->watch_hub()->open_watchers(), 1u);
  context_.TryCancel();
}

TEST_F(KeepaliveTest, APeerThatStopsAnsweringIsDropped) {
  OpenWatch();
  relay_->Freeze();
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (taskd_.server->watch_hub()->open_watchers() > 0 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(taskd_.server->watch_hub()->open_watchers(), 0u)
      << "the stream of an unanswering peer is still open";
  context_.TryCancel();
}

}  // namespace
}  // namespace taskd
