// InProcessTaskd: a taskd served inside the test process on a free loopback
// port, with a plaintext channel of its own and a TaskClient over it; the
// starting point of the end-to-end fixtures.
//
//   testing::InProcessTaskd taskd;
//   TaskServerOptions options;
//   options.store.path = dir.File("taskd.db");
//   ASSERT_TRUE(taskd.Start(options).ok());
//   taskd.client->Create(task);
//   taskd.Stop();
//
// Not thread-safe; the fixture owns it.
#ifndef TASKD_TESTS_TEST_SERVER_H_
#define TASKD_TESTS_TEST_SERVER_H_

#include <grpcpp/channel.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/task_client.h"
#include "server/task_server.h"

namespace taskd::testing {

struct InProcessTaskd {
  // Starts taskd with `options`, listening on 127.0.0.1 and a free port
  // (options.listen_address is replaced), and connects `channel` and
  // `client` to it. The error of TaskServer::Start if it fails.
  absl::Status Start(TaskServerOptions options);
  // Drops the client, then shuts the server down, giving calls in flight
  // `grace`. Does nothing if not started.
  void Stop(absl::Duration grace = absl::Seconds(2));

  std::unique_ptr<TaskServer> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<TaskClient> client;
};

}  // namespace taskd::testing

#endif  // TASKD_TESTS_TEST_SERVER_H_
