#include "server/task_server.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace taskd {

absl::StatusOr<std::unique_ptr<TaskServer>> TaskServer::Start(
    const TaskServerOptions& options) {
  std::unique_ptr<TaskServer> server(new TaskServer());
  server->watch_hub_ = std::make_unique<WatchHub>(options.watch);
  SqliteTaskStoreOptions store_options = options.store;
  WatchHub* hub = server->watch_hub_.get();
  auto chained = store_options.on_commit;
  store_options.on_commit = [hub, chained](const std::vector<Change>& changes) {
    hub->OnCommit(changes);
    if (chained) chained(changes);
  };
  absl::StatusOr<std::unique_ptr<TaskStore>> store =
      OpenSqliteTaskStore(store_options);
  if (!store.ok()) return store.status();
  server->store_ = std::move(*store);
  hub->Attach(server->store_.get());
  if (options.auth_tokens_path.empty()) {
    server->authorizer_ = std::make_unique<Authorizer>();
  } else {
    absl::StatusOr<std::unique_ptr<Authorizer>> authorizer =
        Authorizer::FromFile(options.auth_tokens_path);
    if (!authorizer.ok()) return authorizer.status();
    server->authorizer_ = std::move(*authorizer);
  }
  server->task_service_ = std::make_unique<TaskService>(
      server->store_.get(), hub, server->authorizer_.get(), options.service);
  server->health_service_ = std::make_unique<HealthService>();

  std::vector<std::string> names = {
      tasks::v1::TaskService::service_full_name(),
      grpc::health::v1::Health::service_full_name(),
      grpc::reflection::v1::ServerReflection::service_full_name(),
      grpc::reflection::v1alpha::ServerReflection::service_full_name()};
  server->reflection_v1_ = std::make_unique<ReflectionV1Service>(names);
  server->reflection_v1alpha_ =
      std::make_unique<ReflectionV1AlphaService>(names);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address,
                           options.credentials != nullptr
                               ? options.credentials
                               : grpc::InsecureServerCredentials(),
                           &server->port_);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      static_cast<int>(
          absl::ToInt64Milliseconds(options.min_client_ping_interval)));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.RegisterService(server->task_service_.get());
  builder.RegisterService(server->health_service_.get());
  builder.RegisterService(server->reflection_v1_.get());
  builder.RegisterService(server->reflection_v1alpha_.get());
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
    absl::Time deadline = absl::Now() + grace;
    health_service_->Shutdown();
    watch_hub_->Shutdown(grace);
    server_->Shutdown(absl::ToChronoTime(deadline));
    server_->Wait();
  }
  server_.reset();
  task_service_.reset();
  health_service_.reset();
  reflection_v1_.reset();
  reflection_v1alpha_.reset();
  store_.reset();
  watch_hub_.reset();
  authorizer_.reset();
}

}  // namespace taskd
