// taskd: the task-tracking gRPC service on its embedded SQLite store.
//
//   taskd [--listen=127.0.0.1:50051] [--db=./taskd.db] [--sync=full|normal]
//
// SIGINT or SIGTERM: stop accepting calls, let calls in flight finish within
// --shutdown_grace, close the database cleanly, exit 0. A second signal
// exits at once; SQLite's journal keeps the database consistent.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "server/task_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve on, host:port. Port 0 picks a free port.");
ABSL_FLAG(std::string, db, "./taskd.db",
          "SQLite database file; created if missing.");
ABSL_FLAG(std::string, sync, "full",
          "Durability: 'full' (an acknowledged change survives power loss) "
          "or 'normal' (survives a crash of taskd; faster commits).");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "How long calls in flight may take to finish after SIGTERM.");
ABSL_FLAG(int64_t, history_max_changes, 1'000'000,
          "Keep at most this many changes in the watch history (0: no limit).");
ABSL_FLAG(absl::Duration, history_max_age, absl::Hours(24 * 7),
          "Drop history older than this (0: no limit).");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

namespace {

// Blocks the shutdown signals in every thread (gRPC's included, which inherit
// the mask), so that only the waiting thread below receives them.
sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the taskd task-tracking gRPC service.\n\n"
      "  taskd [--listen=127.0.0.1:50051] [--db=./taskd.db]\n\n"
      "Serves tasks.v1.TaskService, grpc.health.v1.Health and server "
      "reflection.");
  absl::ParseCommandLine(argc, argv);
  sigset_t signals = BlockShutdownSignals();

  taskd::LogLevel level;
  if (!taskd::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    std::cerr << "taskd: --log_level must be debug, info, warning or error\n";
    return 2;
  }
  taskd::SetMinLogLevel(level);
  std::string sync = absl::GetFlag(FLAGS_sync);
  if (sync != "full" && sync != "normal") {
    std::cerr << "taskd: --sync must be full or normal\n";
    return 2;
  }

  taskd::TaskServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.store.path = absl::GetFlag(FLAGS_db);
  options.store.synchronous_full = sync == "full";
  options.store.history_max_changes = absl::GetFlag(FLAGS_history_max_changes);
  options.store.history_max_age = absl::GetFlag(FLAGS_history_max_age);

  absl::StatusOr<std::unique_ptr<taskd::TaskServer>> server =
      taskd::TaskServer::Start(options);
  if (!server.ok()) {
    taskd::Log(taskd::LogLevel::kError, "taskd cannot start: %s",
               server.status().ToString());
    return 1;
  }
  taskd::Log(taskd::LogLevel::kInfo,
             "taskd serving address=%s port=%d db=%s sync=%s revision=%d "
             "tls=off auth=off",
             options.listen_address, (*server)->port(), options.store.path,
             sync, (*server)->store()->CurrentRevision());

  absl::Notification stop;
  std::thread waiter([&] {
    int received = 0;
    sigwait(&signals, &received);
    taskd::Log(taskd::LogLevel::kInfo,
               "taskd received signal %d; shutting down", received);
    stop.Notify();
    sigwait(&signals, &received);
    taskd::LogLine(taskd::LogLevel::kWarning, "second signal: exiting at once");
    _exit(1);
  });
  waiter.detach();

  stop.WaitForNotification();
  (*server)->Shutdown(absl::GetFlag(FLAGS_shutdown_grace));
  server->reset();
  taskd::LogLine(taskd::LogLevel::kInfo, "taskd stopped cleanly");
  return 0;
}
