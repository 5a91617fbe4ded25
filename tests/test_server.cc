#include "tests/test_server.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace taskd::testing {

absl::Status InProcessTaskd::Start(TaskServerOptions options) {
  options.listen_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<TaskServer>> started =
      TaskServer::Start(options);
  if (!started.ok()) return started.status();
  server = std::move(*started);
  channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server->port()),
                                grpc::InsecureChannelCredentials());
  client = std::make_unique<TaskClient>(channel);
  return absl::OkStatus();
}

void InProcessTaskd::Stop(absl::Duration grace) {
  client.reset();
  if (server != nullptr) server->Shutdown(grace);
  server.reset();
}

}  // namespace taskd::testing
