#include "server/task_server.h"

#include <grpc/grpc.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "server/call_log.h"
#include "server/grpc_status.h"
#include "storage/open_task_store.h"
#include "storage/pg_task_store.h"

namespace taskd {

absl::StatusOr<std::unique_ptr<TaskServer>> TaskServer::Start(
    const TaskServerOptions& options) {
  std::unique_ptr<TaskServer> server(new TaskServer());
  WatchHubOptions watch_options = options.watch;
  SqliteTaskStoreOptions store_options = options.store;
  TaskServiceOptions service_options = options.service;
  // BackupDatabase copies SQLite files; a PostgreSQL database is backed
  // up with PostgreSQL's own tools, and the call says so.
  if (service_options.backup_scratch_path.empty() &&
      !IsPostgresUri(options.store.path)) {
    service_options.backup_scratch_path = options.store.path + ".backup";
  }
  if (options.clock != nullptr) {
    watch_options.clock = options.clock;
    store_options.clock = options.clock;
    service_options.clock = options.clock;
  }
  server->watch_hub_ = std::make_unique<WatchHub>(watch_options);
  CountHubOptions count_options = options.counts;
  if (options.clock != nullptr) count_options.clock = options.clock;
  server->count_hub_ = std::make_unique<CountHub>(count_options);
  server->metrics_ = std::make_unique<Metrics>();
  Metrics* metrics = server->metrics_.get();
  DispatcherOptions dispatcher_options;
  dispatcher_options.clock = service_options.clock;
  server->dispatcher_ = std::make_unique<Dispatcher>(dispatcher_options);
  TaskTimersOptions timer_options;
  timer_options.clock = service_options.clock;
  timer_options.on_fire = [metrics](const Task& before, const Task& after) {
    metrics->CountTimeout(after);
    Log(LogLevel::kInfo,
        "timeout task=%s timeout=%s state=%s->%s result=%s assignment=%d/%d "
        "executor=%s",
        after.id(), tasks::v1::TaskTimeout_Name(after.timeout()),
        Task::State_Name(before.state()), Task::State_Name(after.state()),
        after.result_code() == Task::RESULT_CODE_UNSPECIFIED
            ? "-"
            : Task::ResultCode_Name(after.result_code()),
        before.assign_count(), std::max(1, before.max_assign_count()),
        before.executor_id().empty() ? "-" : before.executor_id());
  };
  timer_options.on_leadership = [metrics](bool leads) {
    metrics->SetSweeperLeader(leads);
  };
  server->timers_ = std::make_unique<TaskTimers>(timer_options);
  auto observe = store_options.observe_commit;
  store_options.observe_commit = [metrics, observe](absl::Duration took,
                                                    size_t batch) {
    metrics->ObserveCommit(took, batch);
    if (observe) observe(took, batch);
  };
  auto observe_get = store_options.observe_get;
  store_options.observe_get = [metrics, observe_get](bool hit) {
    metrics->CountCacheLookup(hit);
    if (observe_get) observe_get(hit);
  };
  WatchHub* hub = server->watch_hub_.get();
  CountHub* count_hub = server->count_hub_.get();
  Dispatcher* dispatcher = server->dispatcher_.get();
  TaskTimers* timers = server->timers_.get();
  auto chained = store_options.on_commit;
  store_options.on_commit = [hub, count_hub, dispatcher, timers, chained,
                             metrics](const std::vector<Change>& changes) {
    hub->OnCommit(changes);
    count_hub->OnCommit(changes);
    dispatcher->OnCommit(changes);
    timers->OnCommit(changes);
    metrics->CountChanges(changes);
    if (chained) chained(changes);
  };
  absl::StatusOr<std::unique_ptr<TaskStore>> store =
      OpenTaskStore(store_options, options.postgres);
  if (!store.ok()) return store.status();
  server->store_ = std::move(*store);
  // Counted before serving, so that every later commit adjusts the count
  // exactly once.
  absl::StatusOr<CountResult> counts = server->store_->Count(
      CountQuery{nullptr, {TaskField::kState, TaskField::kResultCode}});
  if (!counts.ok()) return counts.status();
  metrics->SetTaskCounts(*counts);
  hub->Attach(server->store_.get());
  count_hub->Attach(server->store_.get());
  dispatcher->Attach(server->store_.get());
  if (absl::Status s = timers->Start(server->store_.get()); !s.ok()) {
    return s;
  }
  if (options.retain_completed > absl::ZeroDuration()) {
    RetentionOptions retention_options;
    retention_options.age = options.retain_completed;
    retention_options.clock = service_options.clock;
    retention_options.on_delete = [metrics](const Task&) {
      metrics->CountRetentionDelete();
    };
    server->retention_ = std::make_unique<Retention>(retention_options);
    server->retention_->Start(server->store_.get());
  }
  if (options.auth_tokens_path.empty()) {
    server->authorizer_ = std::make_unique<Authorizer>();
  } else {
    absl::StatusOr<std::unique_ptr<Authorizer>> authorizer =
        Authorizer::FromFile(options.auth_tokens_path);
    if (!authorizer.ok()) return authorizer.status();
    server->authorizer_ = std::move(*authorizer);
  }
  // Owned by the gRPC server once built; it outlives every call it sees.
  auto call_log = std::make_unique<CallLog>(metrics);
  CallLog* log = call_log.get();
  server->call_log_ = log;
  auto noted = service_options.on_caller;
  service_options.on_caller = [log, noted](
                                  const grpc::ServerContextBase& context,
                                  const Caller& caller) {
    log->NoteCaller(context, caller);
    if (noted) noted(context, caller);
  };
  server->task_service_ = std::make_unique<TaskService>(
      server->store_.get(), hub, count_hub, dispatcher, timers,
      server->authorizer_.get(), service_options);
  server->health_service_ = std::make_unique<HealthService>();

  std::vector<std::string> names = {
      tasks::v1::TaskService::service_full_name(),
      grpc::health::v1::Health::service_full_name(),
      grpc::reflection::v1::ServerReflection::service_full_name(),
      grpc::reflection::v1alpha::ServerReflection::service_full_name()};
  server->reflection_v1_ = std::make_unique<ReflectionV1Service>(names);
  server->reflection_v1alpha_ =
      std::make_unique<ReflectionV1AlphaService>(names);
  if (!options.metrics_listen.empty()) {
    try {
      server->exposer_ =
          std::make_unique<prometheus::Exposer>(options.metrics_listen);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat(
          "cannot serve metrics on ", options.metrics_listen, ": ", e.what()));
    }
    server->exposer_->RegisterCollectable(server->metrics_->registry());
  }
  grpc::ServerBuilder builder;
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  // The rewrite first, so that the call log sees the status sent.
  interceptors.push_back(std::make_unique<MalformedRequestInterceptor>());
  interceptors.push_back(std::move(call_log));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.AddListeningPort(options.listen_address,
                           options.credentials != nullptr
                               ? options.credentials
                               : grpc::InsecureServerCredentials(),
                           &server->port_);
  // gRPC sets SO_REUSEPORT by default on Linux, so that a second process
  // could bind the same port and silently take half of the connections: a
  // taskd's port is its alone ("address in use" for the second).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
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
  if (!options.http.listen_address.empty()) {
    http::HttpServerOptions http_options = options.http;
    std::shared_ptr<prometheus::Registry> registry =
        server->metrics_->registry();
    http_options.metrics = [registry] {
      return prometheus::TextSerializer().Serialize(registry->Collect());
    };
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    absl::StatusOr<std::unique_ptr<http::HttpServer>> http =
        http::HttpServer::Start(http_options,
                                server->server_->InProcessChannel(args));
    if (!http.ok()) {
      server->health_service_->Shutdown();
      server->server_->Shutdown();
      return http.status();
    }
    server->http_ = *std::move(http);
  }
  TaskServer* self = server.get();
  server->metrics_thread_ = std::thread([self] {
    SetThreadName("taskd-metrics");
    int64_t delivered = 0;
    while (true) {
      self->metrics_->SetOpenWatchStreams(self->watch_hub_->open_watchers());
      int64_t now = self->watch_hub_->events_delivered();
      self->metrics_->AddEventsDelivered(now - delivered);
      delivered = now;
      self->metrics_->SetRevision(self->store_->CurrentRevision());
      if (self->stop_metrics_.WaitForNotificationWithTimeout(
              absl::Seconds(1))) {
        return;
      }
    }
  });
  return server;
}

int TaskServer::metrics_port() const {
  if (exposer_ == nullptr) return 0;
  std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

TaskServer::~TaskServer() { Shutdown(absl::ZeroDuration()); }

void TaskServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (metrics_thread_.joinable()) {
    stop_metrics_.Notify();
    metrics_thread_.join();
  }
  if (health_service_ != nullptr) health_service_->SetServing(false);
  if (server_ != nullptr) {
    // The streams end first (their final responses reach HTTP clients
    // too), then the HTTP listener closes, before the gRPC server that
    // its calls go to.
    // Streams that would stay open forever must be told to end first, or
    // Shutdown waits out the whole grace period for them.
    absl::Time deadline = absl::Now() + grace;
    health_service_->Shutdown();
    dispatcher_->Shutdown();  // waiting acquires answer "none" now
    watch_hub_->Shutdown(grace);
    count_hub_->Shutdown(grace);
    if (http_ != nullptr) http_->Shutdown();
    // gRPC's Shutdown waits for the calls in flight and also for every
    // client to close its connection, which an idle client (a service that
    // keeps its channel open) does late or never: until the deadline. Once
    // no call is left, the connections are closed from here instead.
    absl::Notification shut;
    std::thread closer([this, &shut, deadline] {
      SetThreadName("taskd-closer");
      // Shutdown refuses new calls first thing; wait for that.
      if (shut.WaitForNotificationWithTimeout(absl::Milliseconds(50))) return;
      while (absl::Now() < deadline) {
        if (call_log_->calls_in_flight() == 0) {
          grpc_server_cancel_all_calls(server_->c_server());
        }
        if (shut.WaitForNotificationWithTimeout(absl::Milliseconds(20))) {
          return;
        }
      }
    });
    server_->Shutdown(absl::ToChronoTime(deadline));
    shut.Notify();
    closer.join();
    server_->Wait();
  }
  http_.reset();
  server_.reset();
  // The timers stop firing before the store closes (they write through it).
  if (timers_ != nullptr) timers_->Stop();
  if (retention_ != nullptr) retention_->Stop();
  // The store before the service: closing it completes the writes still
  // queued or stalled on the disk, and their completions call into the
  // service (to cancel a default-deadline timer), also for calls that the
  // deadline already ended.
  store_.reset();
  task_service_.reset();
  health_service_.reset();
  reflection_v1_.reset();
  reflection_v1alpha_.reset();
  watch_hub_.reset();
  count_hub_.reset();
  timers_.reset();
  retention_.reset();
  dispatcher_.reset();
  exposer_.reset();
  authorizer_.reset();
  metrics_.reset();
}

}  // namespace taskd
