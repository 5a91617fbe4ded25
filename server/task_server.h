// TaskServer: a running taskd: the store, the services and the gRPC server
// that serves them, wired together. The taskd binary is a thin main() over
// this; tests start one on port 0 the same way.
//
//   TaskServerOptions options;
//   options.listen_address = "127.0.0.1:0";
//   options.store.path = dir + "/taskd.db";
//   absl::StatusOr<std::unique_ptr<TaskServer>> server =
//       TaskServer::Start(options);
//   ... (*server)->port() ...
//   (*server)->Shutdown(absl::Seconds(5));
#ifndef TASKD_SERVER_TASK_SERVER_H_
#define TASKD_SERVER_TASK_SERVER_H_

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <prometheus/exposer.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/auth.h"
#include "server/call_log.h"
#include "server/health_service.h"
#include "server/http/http_server.h"
#include "server/metrics.h"
#include "server/reflection_service.h"
#include "server/retention.h"
#include "server/task_service.h"
#include "server/task_timers.h"
#include "server/watch_hub.h"
#include "storage/pg_task_store.h"
#include "storage/sqlite_task_store.h"

namespace taskd {

struct TaskServerOptions {
  // host:port to listen on; port 0 picks a free port (see port()).
  // Default 127.0.0.1:50051.
  std::string listen_address = "127.0.0.1:50051";
  // The embedded store. store.path defaults to ./taskd.db.
  SqliteTaskStoreOptions store = [] {
    SqliteTaskStoreOptions o;
    o.path = "taskd.db";
    return o;
  }();
  // PostgreSQL's own settings, for a postgresql:// store.path (the
  // settings both engines have come from `store`).
  PgSettings postgres;
  TaskServiceOptions service;
  WatchHubOptions watch;
  CountHubOptions counts;

  // Transport security. Default: plaintext (grpc::InsecureServerCredentials).
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // The token file (server/auth.h); empty: open mode, no authentication.
  std::string auth_tokens_path;
  // Largest request accepted; bigger ones fail with RESOURCE_EXHAUSTED.
  // Default 1 MiB (requests are small; the largest legal one is a few KiB).
  int max_receive_message_bytes = 1 << 20;
  // HTTP/2 keepalive. The server pings an idle connection every
  // keepalive_time and drops it when no answer comes within
  // keepalive_timeout, so dead watchers do not linger. It accepts client
  // pings as often as every min_client_ping_interval, with or without calls
  // in flight, so that clients behind NATs and proxies can keep an idle
  // watch alive (they should ping every 20-60 s).
  absl::Duration keepalive_time = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  // host:port for Prometheus text on /metrics; empty: not served. (The
  // HTTP listener serves /metrics too; this is a listener of its own, for
  // setups that scrape a separate port.)
  std::string metrics_listen;
  // The HTTP listener (gRPC-Web, Connect, Server-Sent Events, /metrics,
  // the dashboard): http.listen_address; empty: no HTTP listener. Its
  // metrics callback is set by the server.
  http::HttpServerOptions http = [] {
    http::HttpServerOptions o;
    o.listen_address = "";
    return o;
  }();
  // Completed tasks older than this are deleted (server/retention.h);
  // zero: kept for ever. Default zero.
  absl::Duration retain_completed = absl::ZeroDuration();
  // The one clock of the whole server: if set, the store, the service and
  // the watch hub all read time through it (and their own clock options
  // are ignored). Not owned; must outlive the server. Null: each
  // component's own (by default the real clock).
  Clock* clock = nullptr;
};

class TaskServer {
 public:
  // Opens the store and starts serving. Errors: the store's (see
  // sqlite_task_store.h), or Unavailable if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<TaskServer>> Start(
      const TaskServerOptions& options);

  TaskServer(const TaskServer&) = delete;
  TaskServer& operator=(const TaskServer&) = delete;
  // Shuts down (with no grace) if Shutdown() was not called.
  ~TaskServer();

  // The port actually bound.
  int port() const { return port_; }
  TaskStore* store() const { return store_.get(); }
  Dispatcher* dispatcher() const { return dispatcher_.get(); }
  TaskTimers* timers() const { return timers_.get(); }
  WatchHub* watch_hub() const { return watch_hub_.get(); }
  CountHub* count_hub() const { return count_hub_.get(); }
  // The port /metrics is served on, 0 if it is not.
  int metrics_port() const;
  // The HTTP listener's port, 0 if there is none.
  int http_port() const { return http_ != nullptr ? http_->port() : 0; }
  http::HttpServer* http_server() const { return http_.get(); }

  // Reads the token file again (SIGHUP). On error the old tokens stay.
  absl::Status ReloadAuth() { return authorizer_->Reload(); }
  bool auth_open() const { return authorizer_->open(); }

  // Health turns NOT_SERVING; watch streams get a final progress response
  // and end with UNAVAILABLE; new calls are refused, calls in flight get
  // `grace` to finish before they are cancelled; then the store is closed
  // (its WAL checkpointed). Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  TaskServer() = default;

  // Declared before the store: the store's on_commit feeds the hub, the
  // dispatcher and the timers, so they must outlive it.
  std::unique_ptr<WatchHub> watch_hub_;
  std::unique_ptr<CountHub> count_hub_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<TaskTimers> timers_;
  // Null unless retain_completed is set.
  std::unique_ptr<Retention> retention_;
  std::unique_ptr<TaskStore> store_;
  std::unique_ptr<Authorizer> authorizer_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  // Copies gauges (open streams, events delivered, revision) into metrics_.
  std::thread metrics_thread_;
  absl::Notification stop_metrics_;
  std::unique_ptr<TaskService> task_service_;
  std::unique_ptr<HealthService> health_service_;
  std::unique_ptr<ReflectionV1Service> reflection_v1_;
  std::unique_ptr<ReflectionV1AlphaService> reflection_v1alpha_;
  std::unique_ptr<grpc::Server> server_;
  // The call log the server owns (its interceptor): the calls in flight.
  CallLog* call_log_ = nullptr;
  // Calls into server_ through its in-process channel: declared after it,
  // so destroyed first.
  std::unique_ptr<http::HttpServer> http_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace taskd

#endif  // TASKD_SERVER_TASK_SERVER_H_
