#include "server/task_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace taskd {

absl::StatusOr<std::unique_ptr<TaskServer>> TaskServer::Start(
    const TaskServerOptions& options) {
  std::unique_ptr<TaskServer> server(new TaskServer());
  absl::StatusOr<std::unique_ptr<TaskStore>> store =
      OpenSqliteTaskStore(options.store);
  if (!store.ok()) return store.status();
  server->store_ = std::move(*store);
  server->task_service_ =
      std::make_unique<TaskService>(server->store_.get(), options.service);
  server->health_service_ = std::make_unique<HealthService>();

  // Registers grpc.reflection.v1alpha; the call also makes sure the plugin
  // is linked in.
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address,
                           grpc::InsecureServerCredentials(), &server->port_);
  builder.RegisterService(server->task_service_.get());
  builder.RegisterService(server->health_service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->health_service_->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address,
                     " (address in use or not valid?)"));
  }
  return server;
}

TaskServer::~TaskServer() { Shutdown(absl::ZeroDuration()); }

void TaskServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (health_service_ != nullptr) health_service_->SetServing(false);
  if (server_ != nullptr) {
    // Streams that would stay open forever must be told to end first, or
    // Shutdown waits out the whole grace period for them.
    health_service_->Shutdown();
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    server_->Wait();
  }
  server_.reset();
  task_service_.reset();
  health_service_.reset();
  store_.reset();
}

}  // namespace taskd
