// taskd: the task-tracking gRPC service on its embedded SQLite store.
//
//   taskd [--listen=127.0.0.1:50051] [--db=./taskd.db] [--sync=full|normal]
//
// SIGINT or SIGTERM: stop accepting calls, let calls in flight finish within
// --shutdown_grace, close the database cleanly, exit 0. A second signal
// exits at once; SQLite's journal keeps the database consistent.
#include <grpc/support/log.h>
#include <grpcpp/security/server_credentials.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "query/task_fields.h"
#include "server/service_manager.h"
#include "server/task_server.h"
#include "server/task_validation.h"
#include "storage/pg_task_store.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve on, host:port. Port 0 picks a free port.");
ABSL_FLAG(std::string, db, "./taskd.db",
          "SQLite database file, created if missing; or a postgresql:// URI "
          "of a PostgreSQL database that several taskd share (README: "
          "Several servers).");
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
ABSL_FLAG(std::string, log_format, "text",
          "text (TIME LEVEL MESSAGE) or json (one {\"time\", \"level\", "
          "\"msg\"} object per line).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain: serve TLS (with --tls_key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: also require client certificates signed by it "
          "(mutual TLS).");
ABSL_FLAG(bool, insecure, false,
          "Allow plaintext on a non-loopback address. Without TLS taskd "
          "listens only on loopback unless this is set.");
ABSL_FLAG(std::string, auth_tokens, "",
          "Token file: one 'SHA256_HEX TENANT_UUID_OR_* ROLE' line per "
          "token; re-read on SIGHUP. Empty: no authentication (open).");
ABSL_FLAG(int32_t, max_receive_bytes, 1 << 20,
          "Largest request accepted; larger is RESOURCE_EXHAUSTED.");
ABSL_FLAG(absl::Duration, default_deadline, absl::Seconds(30),
          "Deadline of write calls that set none: past it, the call ends "
          "with DEADLINE_EXCEEDED (0: none).");
ABSL_FLAG(absl::Duration, default_queue_timeout, absl::ZeroDuration(),
          "Executors: a new task's queueTimeout if it sets none (0: none).");
ABSL_FLAG(absl::Duration, default_ack_timeout, absl::Seconds(30),
          "Executors: a new task's ackTimeout if it sets none (0: none).");
ABSL_FLAG(absl::Duration, default_heartbeat_interval, absl::ZeroDuration(),
          "Executors: a new task's heartBeatInterval if it sets none (0: "
          "none).");
ABSL_FLAG(absl::Duration, default_exec_timeout, absl::ZeroDuration(),
          "Executors: a new task's execTimeout if it sets none (0: none).");
ABSL_FLAG(absl::Duration, progress_interval, absl::Seconds(5),
          "Executors: a heartbeat's progress is written only if the task has "
          "not changed for this long.");
ABSL_FLAG(absl::Duration, max_acquire_wait, absl::Seconds(60),
          "Executors: the longest AcquireTask wait accepted.");
ABSL_FLAG(int32_t, max_page_size, 1000,
          "ListTasks page size cap; larger requests are lowered to it.");
ABSL_FLAG(int32_t, max_watchers, 20000,
          "Open WatchTasks streams, all tenants (0: no cap).");
ABSL_FLAG(int32_t, max_watchers_per_tenant, 2000,
          "Open WatchTasks streams per tenant (0: no cap).");
ABSL_FLAG(std::string, metrics_listen, "",
          "host:port to serve Prometheus metrics on (/metrics) apart from "
          "--http_listen; empty: off.");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:8080",
          "host:port of the HTTP listener: the dashboard (/), gRPC-Web and "
          "Connect (POST /tasks.v1.TaskService/<Method>), Server-Sent Events "
          "(/v1/tasks:watch, /v1/tasks:counts) and /metrics. Same TLS, "
          "tokens and loopback rule as --listen. Empty: off.");
ABSL_FLAG(int32_t, http_threads, 2,
          "Threads that serve every HTTP connection (streams hold none).");
ABSL_FLAG(int32_t, http_max_connections, 10000,
          "Open HTTP connections at most; more are closed on accept.");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Seconds(60),
          "Ping idle connections this often.");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(20),
          "Drop a connection whose ping is not answered within this.");
ABSL_FLAG(absl::Duration, min_client_ping_interval, absl::Seconds(10),
          "Accept client keepalive pings this often (clients should ping "
          "every 20-60 s).");
ABSL_FLAG(int32_t, read_connections, 4,
          "SQLite connections for reads (GetTask, ListTasks, watch catch-up).");
ABSL_FLAG(int32_t, task_cache_mib, 8,
          "GetTask keeps tasks it read in memory, up to this many MiB, until "
          "a write changes them; 0: none. SQLite only.");
ABSL_FLAG(int32_t, max_batch, 256,
          "Group commit: at most this many writes per transaction.");
ABSL_FLAG(int32_t, checkpoint_pages, 10000,
          "Checkpoint the WAL (copy it into the database file) at the commit "
          "that takes it past this many pages (SQLite's default: 1000).");
ABSL_FLAG(bool, pg_listen, taskd::PgSettings().listen,
          "PostgreSQL: hear of the other replicas' commits through "
          "LISTEN/NOTIFY. false for a pooler that cannot hold a LISTEN "
          "(PgBouncer in transaction mode): then every --pg_poll_interval "
          "only.");
ABSL_FLAG(absl::Duration, pg_poll_interval, taskd::PgSettings().poll_interval,
          "PostgreSQL: read the other replicas' commits at least this often "
          "(the safety net for a lost notification), and try this often for "
          "the sweepers' lock another replica holds. 10ms..1h.");
ABSL_FLAG(absl::Duration, pg_connect_timeout,
          taskd::PgSettings().connect_timeout,
          "PostgreSQL: a connection not made within this fails its call "
          "UNAVAILABLE (at start-up, taskd exits). 1s..10m, rounded up to "
          "whole seconds; libpq waits at least 2s. A connect_timeout in the "
          "URI wins.");
ABSL_FLAG(absl::Duration, pg_dead_peer_timeout,
          taskd::PgSettings().dead_peer_timeout,
          "PostgreSQL: give a connection up when its peer has been silent "
          "this long (TCP keepalives and user timeout, at both ends). "
          "1s..1h.");
ABSL_FLAG(absl::Duration, retain_completed, absl::ZeroDuration(),
          "Delete completed tasks this long after their completedAt, each a "
          "DELETED change for watchers (0: keep them for ever).");
ABSL_FLAG(std::string, restore, "",
          "Backup file (taskctl backup) to start from: copied to --db, "
          "which must not exist yet, before serving.");

namespace {

// A flag error: taskd prints "taskd: MESSAGE" and exits 2.
absl::Status FlagError(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

absl::StatusOr<std::string> ReadFlagFile(const std::string& flag,
                                         const std::string& path) {
  std::ifstream in(path);
  if (!in) return FlagError(absl::StrCat("--", flag, ": cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// True for addresses only this machine can reach.
bool IsLoopback(const std::string& address) {
  if (absl::StartsWith(address, "unix:")) return true;
  std::string host = address;
  size_t colon = address.rfind(':');
  if (colon != std::string::npos) host = address.substr(0, colon);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

// Accepts --flag-name as a spelling of --flag_name, so that both the
// documented dashed forms and Abseil's underscores work.
void NormaliseFlagNames(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (arg[0] != '-' || arg[1] != '-') continue;
    for (char* c = arg + 2; *c != '\0' && *c != '='; ++c) {
      if (*c == '-') *c = '_';
    }
  }
}

// Everything but transport security, from the flags.
absl::StatusOr<taskd::TaskServerOptions> OptionsFromFlags() {
  taskd::LogLevel level;
  if (!taskd::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    return FlagError("--log_level must be debug, info, warning or error");
  }
  taskd::SetMinLogLevel(level);
  taskd::LogFormat log_format;
  if (!taskd::ParseLogFormat(absl::GetFlag(FLAGS_log_format), &log_format)) {
    return FlagError("--log_format must be text or json");
  }
  taskd::SetLogFormat(log_format);
  const std::string sync = absl::GetFlag(FLAGS_sync);
  if (sync != "full" && sync != "normal") {
    return FlagError("--sync must be full or normal");
  }
  taskd::TaskServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.store.path = absl::GetFlag(FLAGS_db);
  options.store.synchronous_full = sync == "full";
  options.store.history_max_changes = absl::GetFlag(FLAGS_history_max_changes);
  options.store.history_max_age = absl::GetFlag(FLAGS_history_max_age);
  options.store.read_connections = absl::GetFlag(FLAGS_read_connections);
  options.store.max_batch = absl::GetFlag(FLAGS_max_batch);
  const int32_t task_cache_mib = absl::GetFlag(FLAGS_task_cache_mib);
  if (task_cache_mib < 0 || task_cache_mib > 1024 * 1024) {
    return FlagError("--task_cache_mib must be within 0..1048576");
  }
  options.store.task_cache_bytes = static_cast<size_t>(task_cache_mib) << 20;
  options.store.checkpoint_pages = absl::GetFlag(FLAGS_checkpoint_pages);
  options.auth_tokens_path = absl::GetFlag(FLAGS_auth_tokens);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.http.listen_address = absl::GetFlag(FLAGS_http_listen);
  options.http.threads = absl::GetFlag(FLAGS_http_threads);
  options.http.max_connections = absl::GetFlag(FLAGS_http_max_connections);
  if (options.http.threads < 1) {
    return FlagError("--http_threads must be at least 1");
  }
  if (options.http.max_connections < 1) {
    return FlagError("--http_max_connections must be at least 1");
  }
  options.max_receive_message_bytes = absl::GetFlag(FLAGS_max_receive_bytes);
  options.service.max_page_size = absl::GetFlag(FLAGS_max_page_size);
  options.service.default_deadline = absl::GetFlag(FLAGS_default_deadline);
  options.service.default_queue_timeout =
      absl::GetFlag(FLAGS_default_queue_timeout);
  options.service.default_ack_timeout =
      absl::GetFlag(FLAGS_default_ack_timeout);
  options.service.default_heartbeat_interval =
      absl::GetFlag(FLAGS_default_heartbeat_interval);
  options.service.default_exec_timeout =
      absl::GetFlag(FLAGS_default_exec_timeout);
  options.service.progress_interval = absl::GetFlag(FLAGS_progress_interval);
  options.service.max_acquire_wait = absl::GetFlag(FLAGS_max_acquire_wait);
  options.watch.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  options.watch.max_watchers_per_tenant =
      absl::GetFlag(FLAGS_max_watchers_per_tenant);
  options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  options.min_client_ping_interval =
      absl::GetFlag(FLAGS_min_client_ping_interval);
  if (options.service.max_page_size < 1 ||
      options.max_receive_message_bytes < 1024) {
    return FlagError(
        "--max_page_size must be >= 1 and --max_receive_bytes >= 1024");
  }
  for (auto [flag, value] :
       {std::pair{"default_queue_timeout",
                  options.service.default_queue_timeout},
        std::pair{"default_ack_timeout", options.service.default_ack_timeout},
        std::pair{"default_heartbeat_interval",
                  options.service.default_heartbeat_interval},
        std::pair{"default_exec_timeout",
                  options.service.default_exec_timeout}}) {
    if (absl::Status s = taskd::CheckTimeout(absl::StrCat("--", flag),
                                             taskd::ToDuration(value));
        !s.ok()) {
      return FlagError(std::string(s.message()));
    }
  }
  if (options.service.progress_interval < absl::ZeroDuration() ||
      options.service.max_acquire_wait < absl::ZeroDuration() ||
      options.service.max_acquire_wait > absl::Hours(1)) {
    return FlagError(
        "--progress_interval must not be negative, and --max_acquire_wait "
        "must be within 0..1h");
  }
  if (options.store.read_connections < 1 || options.store.max_batch < 1 ||
      options.store.checkpoint_pages < 1) {
    return FlagError(
        "--read_connections, --max_batch and --checkpoint_pages must be >= 1");
  }
  options.postgres.listen = absl::GetFlag(FLAGS_pg_listen);
  options.postgres.poll_interval = absl::GetFlag(FLAGS_pg_poll_interval);
  options.postgres.connect_timeout = absl::GetFlag(FLAGS_pg_connect_timeout);
  options.postgres.dead_peer_timeout =
      absl::GetFlag(FLAGS_pg_dead_peer_timeout);
  if (options.postgres.poll_interval < absl::Milliseconds(10) ||
      options.postgres.poll_interval > absl::Hours(1)) {
    return FlagError("--pg_poll_interval must be within 10ms..1h");
  }
  if (options.postgres.connect_timeout < absl::Seconds(1) ||
      options.postgres.connect_timeout > absl::Minutes(10)) {
    return FlagError("--pg_connect_timeout must be within 1s..10m");
  }
  if (options.postgres.dead_peer_timeout < absl::Seconds(1) ||
      options.postgres.dead_peer_timeout > absl::Hours(1)) {
    return FlagError("--pg_dead_peer_timeout must be within 1s..1h");
  }
  options.retain_completed = absl::GetFlag(FLAGS_retain_completed);
  if (options.retain_completed != absl::ZeroDuration() &&
      options.retain_completed < absl::Seconds(1)) {
    return FlagError("--retain_completed must be 0 (keep) or at least 1s");
  }
  return options;
}

// Sets options->credentials from the TLS flags; returns what the start-up
// line says of TLS: "off", "on" or "mutual". Plaintext is refused on an
// address other machines can reach, unless --insecure.
absl::StatusOr<std::string> CredentialsFromFlags(
    taskd::TaskServerOptions* options) {
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  const std::string client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (cert.empty() != key.empty()) {
    return FlagError("--tls_cert and --tls_key go together");
  }
  if (cert.empty()) {
    if (!client_ca.empty()) {
      return FlagError("--tls_client_ca needs --tls_cert and --tls_key");
    }
    // The same rule for both listeners.
    for (const std::string& address :
         {options->listen_address, options->http.listen_address}) {
      if (address.empty() || IsLoopback(address)) continue;
      if (!absl::GetFlag(FLAGS_insecure)) {
        return FlagError(absl::StrCat(
            "refusing to serve plaintext on ", address,
            ", which is not a loopback address: give --tls_cert and "
            "--tls_key, or --insecure to allow it"));
      }
      taskd::Log(taskd::LogLevel::kWarning,
                 "serving PLAINTEXT on non-loopback address %s (--insecure)",
                 address);
    }
    return std::string("off");
  }
  grpc::SslServerCredentialsOptions ssl(
      client_ca.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  absl::StatusOr<std::string> key_pem = ReadFlagFile("tls_key", key);
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::string> cert_pem = ReadFlagFile("tls_cert", cert);
  if (!cert_pem.ok()) return cert_pem.status();
  ssl.pem_key_cert_pairs.push_back({*key_pem, *cert_pem});
  options->http.tls_cert_pem = *cert_pem;
  options->http.tls_key_pem = *key_pem;
  if (!client_ca.empty()) {
    absl::StatusOr<std::string> ca_pem =
        ReadFlagFile("tls_client_ca", client_ca);
    if (!ca_pem.ok()) return ca_pem.status();
    ssl.pem_root_certs = *ca_pem;
    options->http.tls_client_ca_pem = *ca_pem;
  }
  options->credentials = grpc::SslServerCredentials(ssl);
  return std::string(client_ca.empty() ? "on" : "mutual");
}

// The start-up line tests and operators read the port and settings from.
void LogServing(const taskd::TaskServerOptions& options,
                taskd::TaskServer& server, const std::string& tls) {
  if (server.auth_open()) {
    taskd::LogLine(taskd::LogLevel::kWarning,
                   "no --auth_tokens: every caller may do everything in "
                   "every tenant");
  }
  // Before the serving line, which tests and scripts wait for.
  if (taskd::IsPostgresUri(options.store.path)) {
    taskd::Log(taskd::LogLevel::kInfo,
               "postgres listen=%s poll_interval=%s connect_timeout=%s "
               "dead_peer_timeout=%s",
               options.postgres.listen ? "on" : "off",
               absl::FormatDuration(options.postgres.poll_interval),
               absl::FormatDuration(options.postgres.connect_timeout),
               absl::FormatDuration(options.postgres.dead_peer_timeout));
  }
  taskd::Log(taskd::LogLevel::kInfo,
             "taskd serving address=%s port=%d db=%s sync=%s revision=%d "
             "tls=%s auth=%s max_receive_bytes=%d max_page_size=%d "
             "default_deadline=%s max_watchers=%d max_watchers_per_tenant=%d "
             "metrics=%s http=%s",
             options.listen_address, server.port(),
             taskd::LoggableDb(options.store.path),
             options.store.synchronous_full ? "full" : "normal",
             server.store()->CurrentRevision(), tls,
             server.auth_open() ? "off" : "tokens",
             options.max_receive_message_bytes, options.service.max_page_size,
             absl::FormatDuration(options.service.default_deadline),
             options.watch.max_watchers, options.watch.max_watchers_per_tenant,
             options.metrics_listen.empty()
                 ? std::string("off")
                 : absl::StrCat(options.metrics_listen.substr(
                                    0, options.metrics_listen.rfind(':')),
                                ":", server.metrics_port()),
             options.http.listen_address.empty()
                 ? std::string("off")
                 : absl::StrCat(options.http.listen_address.substr(
                                    0, options.http.listen_address.rfind(':')),
                                ":", server.http_port()));
}

// Blocks the shutdown signals in every thread (gRPC's included, which inherit
// the mask), so that only WaitForShutdownSignal receives them. Call before
// any thread starts.
sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Returns at the first SIGINT or SIGTERM; SIGHUP reloads the token file
// meanwhile. A thread left behind keeps watching: a second SIGINT or
// SIGTERM during the shutdown exits at once.
void WaitForShutdownSignal(const sigset_t& signals, taskd::TaskServer* server) {
  absl::Notification stop;
  std::thread waiter([signals, &stop, server] {
    taskd::SetThreadName("taskd-signals");
    int received = 0;
    while (true) {
      sigwait(&signals, &received);
      if (received != SIGHUP) break;
      absl::Status reloaded = server->ReloadAuth();
      if (reloaded.ok()) {
        taskd::LogLine(taskd::LogLevel::kInfo, "SIGHUP: token file reloaded");
      } else {
        taskd::Log(taskd::LogLevel::kError,
                   "SIGHUP: token file not reloaded, old tokens stay: %s",
                   reloaded.ToString());
      }
    }
    taskd::Log(taskd::LogLevel::kInfo,
               "taskd received signal %d; shutting down", received);
    stop.Notify();
    do {
      sigwait(&signals, &received);
    } while (received == SIGHUP);
    taskd::LogLine(taskd::LogLevel::kWarning, "second signal: exiting at once");
    _exit(1);
  });
  waiter.detach();
  stop.WaitForNotification();
}

// In JSON, gRPC's own messages (gpr_log: errors, more with GRPC_VERBOSITY)
// go through taskd's logger too, so that every line is one JSON object.
void LogGrpcThroughTaskd() {
  gpr_set_log_function([](gpr_log_func_args* args) {
    taskd::LogLevel level = taskd::LogLevel::kDebug;
    if (args->severity == GPR_LOG_SEVERITY_INFO) level = taskd::LogLevel::kInfo;
    if (args->severity == GPR_LOG_SEVERITY_ERROR) {
      level = taskd::LogLevel::kError;
    }
    taskd::Log(level, "grpc %s:%d %s", args->file, args->line, args->message);
  });
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the taskd task-tracking gRPC service.\n\n"
      "  taskd [--listen=127.0.0.1:50051] [--db=./taskd.db]\n\n"
      "Serves tasks.v1.TaskService, grpc.health.v1.Health and server "
      "reflection.");
  NormaliseFlagNames(argc, argv);
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built with deadlock detection on, which records every
  // lock in a graph (measured: 66 ns instead of 26 per uncontended lock).
  // The tests keep it; the service does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const sigset_t signals = BlockShutdownSignals();

  absl::StatusOr<taskd::TaskServerOptions> options = OptionsFromFlags();
  absl::StatusOr<std::string> tls =
      options.ok() ? CredentialsFromFlags(&*options)
                   : absl::StatusOr<std::string>(options.status());
  if (!tls.ok()) {
    std::cerr << "taskd: " << tls.status().message() << "\n";
    return 2;
  }
  if (taskd::CurrentLogFormat() == taskd::LogFormat::kJson) {
    LogGrpcThroughTaskd();
  }
  if (const std::string backup = absl::GetFlag(FLAGS_restore);
      !backup.empty()) {
    if (taskd::IsPostgresUri(options->store.path)) {
      std::cerr << "taskd: --restore starts an SQLite database from a "
                   "backup; restore PostgreSQL with its own tools "
                   "(pg_restore)\n";
      return 2;
    }
    absl::Status restored =
        taskd::RestoreSqliteDatabase(backup, options->store.path);
    if (!restored.ok()) {
      std::cerr << "taskd: --restore: " << restored.message() << "\n";
      return 2;
    }
    taskd::Log(taskd::LogLevel::kInfo, "restored %s from %s",
               options->store.path, backup);
  }
  absl::StatusOr<std::unique_ptr<taskd::TaskServer>> server =
      taskd::TaskServer::Start(*options);
  if (!server.ok()) {
    taskd::Log(taskd::LogLevel::kError, "taskd cannot start: %s",
               server.status().ToString());
    return 1;
  }
  LogServing(*options, **server, *tls);
  // systemd (Type=notify): the ports accept calls from here on.
  taskd::NotifyServiceManager("READY=1");
  WaitForShutdownSignal(signals, server->get());
  taskd::NotifyServiceManager("STOPPING=1");
  (*server)->Shutdown(absl::GetFlag(FLAGS_shutdown_grace));
  server->reset();
  taskd::LogLine(taskd::LogLevel::kInfo, "taskd stopped cleanly");
  return 0;
}
