#include "tests/test_server.h"

#include <grpcpp/create_channel.h>

#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace taskd::testing {

absl::Status InProcessTaskd::Start(Options options) {
  Stop();
  options_ = std::move(options);
  return Serve(0);
}

absl::Status InProcessTaskd::Start(TaskServerOptions server_options) {
  Options options;
  options.server = std::move(server_options);
  return Start(std::move(options));
}

absl::Status InProcessTaskd::Restart(absl::Duration grace) {
  Stop(grace);
  return Serve(port_);
}

absl::Status InProcessTaskd::Serve(int port) {
  options_.server.listen_address = absl::StrCat("127.0.0.1:", port);
  absl::StatusOr<std::unique_ptr<TaskServer>> started =
      TaskServer::Start(options_.server);
  if (!started.ok()) return started.status();
  server = std::move(*started);
  port_ = server->port();
  channel = NewChannel();
  client = std::make_unique<TaskClient>(channel, options_.client);
  return absl::OkStatus();
}

void InProcessTaskd::Stop(absl::Duration grace) {
  client.reset();
  if (server != nullptr) server->Shutdown(grace);
  server.reset();
}

std::string InProcessTaskd::address() const {
  return absl::StrCat(options_.host, ":", port_);
}

std::shared_ptr<grpc::Channel> InProcessTaskd::NewChannel() const {
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options_.channel_credentials != nullptr
          ? options_.channel_credentials
          : grpc::InsecureChannelCredentials();
  return grpc::CreateCustomChannel(address(), credentials,
                                   options_.channel_args);
}

}  // namespace taskd::testing
