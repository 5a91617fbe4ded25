// InProcessTaskd: a taskd served inside the test process on a free loopback
// port, with a channel of its own and a TaskClient over it; the starting
// point of the end-to-end fixtures.
//
//   testing::InProcessTaskd taskd;
//   testing::InProcessTaskd::Options options;
//   options.server.store.path = dir.File("taskd.db");
//   options.server.auth_tokens_path = dir.File("tokens");  // and so on
//   ASSERT_TRUE(taskd.Start(options).ok());
//   taskd.client->Create(task);
//   taskd.options().server.watch.max_watchers = 5;
//   ASSERT_TRUE(taskd.Restart().ok());  // same port, same database
//   taskd.Stop();
//
// Not thread-safe; the fixture owns it.
#ifndef TASKD_TESTS_TEST_SERVER_H_
#define TASKD_TESTS_TEST_SERVER_H_

#include <grpcpp/channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/task_client.h"
#include "server/task_server.h"

namespace taskd::testing {

class InProcessTaskd {
 public:
  struct Options {
    // What the server runs with: store, service, watch, credentials, auth
    // tokens, keepalive. listen_address is replaced: 127.0.0.1 and a free
    // port.
    TaskServerOptions server;
    // How `channel` and NewChannel() connect. Default: plaintext.
    std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
    grpc::ChannelArguments channel_args;
    // The host they dial (and address() names): "localhost" to match a TLS
    // certificate.
    std::string host = "127.0.0.1";
    // `client`'s deadline and bearer token.
    TaskClient::Options client;
  };

  // Starts taskd with `options` on a free port and connects `channel` and
  // `client` to it. The error of TaskServer::Start if it fails.
  absl::Status Start(Options options);
  // The same with the channel and client defaults.
  absl::Status Start(TaskServerOptions server_options);
  // Stop(grace), then starts again with options() on the same port (and so
  // the same database, unless options() changed), with a new channel and
  // client. Channels taken before keep working once the server is back.
  absl::Status Restart(absl::Duration grace = absl::Seconds(2));
  // Drops the client, then shuts the server down, giving calls in flight
  // `grace`. Does nothing if not started.
  void Stop(absl::Duration grace = absl::Seconds(2));

  // The port of the last start (Restart keeps it); 0 before the first.
  int port() const { return port_; }
  // host:port, as `channel` dials it.
  std::string address() const;
  // A further channel like `channel` (same credentials and arguments).
  std::shared_ptr<grpc::Channel> NewChannel() const;
  // The options of the last Start; Restart uses what is set here.
  Options& options() { return options_; }

  std::unique_ptr<TaskServer> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<TaskClient> client;

 private:
  absl::Status Serve(int port);

  Options options_;
  int port_ = 0;
};

}  // namespace taskd::testing

#endif  // TASKD_TESTS_TEST_SERVER_H_
