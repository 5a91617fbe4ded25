// taskctl: the command line for taskd.
//
//   taskctl [--server=HOST:PORT] [-o table|json] COMMAND [ARGS] [--FLAG=VALUE]
//
// Run `taskctl help` for the commands. Exit status: 0 on success, 1 when the
// server answered with an error (printed as CODE: message), 2 for a usage
// error.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/channel.h"
#include "client/executor.h"
#include "client/task_client.h"
#include "client/task_format.h"
#include "client/task_watch.h"
#include "query/task_fields.h"

namespace {

using tasks::v1::Task;

constexpr char kUsage[] = R"(taskctl: the command line for taskd.

usage: taskctl [--server=HOST:PORT] [-o table|json] [--timeout=10s] COMMAND ...

commands:
  create --type=TYPE [--id=ID] [--priority=P] [--policy-id=UUID]
         [--resource-id=UUID] [--tenant-id=UUID] [--request-id=KEY]
         [--queue-timeout=D] [--ack-timeout=D] [--heartbeat-interval=D]
         [--exec-timeout=D] [--max-assign-count=N]
                                  D: a duration such as 30s, 5m; 0 = none;
                                  unset: the server's default
  get ID                          (ID or UUID)
  list [--filter=EXPR] [--order-by=KEYS] [--limit=N] [--page-token=T] [--all]
  count [--filter=EXPR] [--group-by=FIELD[,FIELD]]
                                  how many tasks, by up to two of state,
                                  result_code, type, priority, tenant_id,
                                  executor_id
  update ID [--type=T] [--priority=P] [--policy-id=UUID] [--resource-id=UUID]
  delete ID
  assign ID --executor=EXECUTOR   prints the task with its lease token
  start ID --lease=TOKEN | pause ID --lease=TOKEN | resume ID --lease=TOKEN
  complete ID --lease=TOKEN --result=ok|error|warning|timedout|abandoned
                                  (cancelled once cancellation was asked)
  cancel ID [--force]             an executor's task: asks it to cancel;
                                  --force: cancelled at once
  acquire --executor=EXECUTOR [--filter=EXPR] [--wait=D]
                                  takes the best enqueued task (with its
                                  lease token); exit status 3 if none came
                                  within --wait (default 0: answer at once)
  heartbeat ID --lease=TOKEN [--progress=CURRENT/TOTAL]
                                  keeps the lease; prints when it ends and
                                  whether cancellation was asked
  work --executor=EXECUTOR --run=COMMAND [--filter=EXPR] [--max-tasks=N]
                                  an executor: acquires tasks one at a time,
                                  runs `sh -c COMMAND` for each (with
                                  TASK_ID and TASK_TYPE set) while sending
                                  heartbeats, completes it ok (exit 0) or
                                  error; a cancel stops COMMAND (SIGTERM)
                                  and completes it cancelled
  backup FILE                     saves a backup of the whole database
                                  (an admin token of every tenant) to
                                  FILE, which must not exist; taskd
                                  --restore=FILE starts from it
  watch [--filter=EXPR] [--since=REV] [--initial]
                                  one line per change, until interrupted;
                                  reconnects and resumes across restarts
Every command that changes a task takes --etag=ETAG (change only if current).

global flags:
  --server   taskd address (default 127.0.0.1:50051, or $TASKD_SERVER)
  -o         output: table (default) or json (the task schema's JSON)
  --timeout  deadline of each call (default 10s)
  --token    bearer token (default $TASKD_TOKEN)
  --tls      speak TLS, trusting the system's CAs
  --tls-ca   PEM CA bundle: speak TLS and trust this CA
  --tls-cert, --tls-key
             PEM client certificate and key, for servers that require them
  --tls-server-name
             name to check the server's certificate against (default: the
             host in --server)

Exit status: 0 success, 1 the server answered with an error (printed as
CODE: message), 2 usage error (including an unreadable --tls-* file), 3
acquire got no task.
)";

struct Args {
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  std::string Get(const std::string& name,
                  const std::string& fallback = "") const {
    auto it = flags.find(name);
    return it == flags.end() ? fallback : it->second;
  }
};

// Flags every command takes.
const std::set<std::string> kGlobalFlags = {
    "server", "o",        "timeout", "token",          "tls",
    "tls-ca", "tls-cert", "tls-key", "tls-server-name"};

// Runs `sh -c command` for a task, with TASK_ID and TASK_TYPE in its
// environment, until it exits or the run is stopping (a cancel, a lost
// lease): then SIGTERM to its process group, and SIGKILL 10 s later. ok for
// exit status 0, cancelled if stopped by a requested cancel, error otherwise.
Task::ResultCode RunCommand(const std::string& command, taskd::TaskRun& run) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!absl::StartsWith(*e, "TASK_ID=") &&
        !absl::StartsWith(*e, "TASK_TYPE=")) {
      env.push_back(*e);
    }
  }
  env.push_back("TASK_ID=" + run.task().id());
  env.push_back("TASK_TYPE=" + run.task().type());
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string shell = "/bin/sh", dash_c = "-c", text = command;
  char* argv[] = {shell.data(), dash_c.data(), text.data(), nullptr};
  // In a process group of its own, so that a stop reaches everything the
  // command started (`sh -c 'a; b'` runs a and b as children of sh).
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  pid_t pid = 0;
  int spawned =
      posix_spawn(&pid, "/bin/sh", nullptr, &attributes, argv, envp.data());
  posix_spawnattr_destroy(&attributes);
  if (spawned != 0) {
    std::cerr << "taskctl: cannot run /bin/sh\n";
    return Task::error;
  }
  int status = 0;
  absl::Time kill_at = absl::InfiniteFuture();
  bool terminated = false;
  while (waitpid(pid, &status, WNOHANG) != pid) {
    // ESRCH: the child has not joined its new group yet (a posix_spawn
    // that returns before the child runs, as under ASan): try again.
    if (run.stopping() && !terminated &&
        (kill(-pid, SIGTERM) == 0 || errno != ESRCH)) {
      terminated = true;
      kill_at = absl::Now() + absl::Seconds(10);
    }
    if (absl::Now() > kill_at) kill(-pid, SIGKILL);
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (run.cancel_requested()) return Task::cancelled;
  if (terminated && !run.lease_lost()) return Task::abandoned;  // stopping
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? Task::ok : Task::error;
}

// Set by SIGINT and SIGTERM during `taskctl work`; a second one ends
// taskctl at once (the default action, restored by the first).
std::atomic<bool> stop_requested{false};

void RequestStop(int signal) {
  stop_requested = true;
  ::signal(signal, SIG_DFL);
}

int UsageError(const std::string& message) {
  std::cerr << "taskctl: " << message << "\n(run `taskctl help` for usage)\n";
  return 2;
}

// Flags: --name=value, --name value, -o value, -o=value; --all and --help
// take no value.
bool Parse(int argc, char** argv, Args* args, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) args->positional.push_back(argv[i]);
      break;
    }
    if (absl::StartsWith(arg, "-") && arg.size() > 1) {
      std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
      std::string value;
      size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (name == "all" || name == "help" || name == "h" ||
                 name == "initial" || name == "tls" || name == "force") {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        *error = absl::StrCat("flag --", name, " needs a value");
        return false;
      }
      if (name == "output") name = "o";
      args->flags[name] = value;
    } else if (args->command.empty()) {
      args->command = arg;
    } else {
      args->positional.push_back(arg);
    }
  }
  return true;
}

// Reads the file a --tls-* flag names into *pem; an error names the flag.
std::string ReadPemFlag(const Args& args, const std::string& flag,
                        std::string* pem) {
  if (!args.Has(flag)) return "";
  const std::string path = args.Get(flag);
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || path.empty()) {
    return absl::StrCat("--", flag, ": cannot read \"", path, "\"");
  }
  *pem = text.str();
  if (pem->find("-----BEGIN ") == std::string::npos) {
    return absl::StrCat("--", flag, ": \"", path, "\" is not a PEM file");
  }
  return "";
}

// Fills the TLS part of *options from the flags; returns a usage error or "".
std::string ChannelSecurity(const Args& args, taskd::ChannelOptions* options) {
  if (args.Has("tls-cert") != args.Has("tls-key")) {
    return "--tls-cert and --tls-key go together";
  }
  for (auto [flag, pem] : {std::pair{"tls-ca", &options->tls_ca_pem},
                           std::pair{"tls-cert", &options->tls_cert_pem},
                           std::pair{"tls-key", &options->tls_key_pem}}) {
    if (std::string error = ReadPemFlag(args, flag, pem); !error.empty()) {
      return error;
    }
  }
  options->tls = (args.Has("tls") && args.Get("tls") != "false") ||
                 args.Has("tls-ca") || args.Has("tls-cert");
  options->tls_server_name = args.Get("tls-server-name");
  if (!options->tls && !options->tls_server_name.empty()) {
    return "--tls-server-name needs --tls or --tls-ca";
  }
  return "";
}

class Command {
 public:
  Command(Args* args, std::shared_ptr<grpc::Channel> channel,
          taskd::TaskClient* client, bool json,
          const taskd::TaskClient::Options& client_options, bool tls)
      : args_(*args),
        channel_(std::move(channel)),
        client_(*client),
        json_(json),
        bearer_token_(client_options.bearer_token),
        client_options_(client_options),
        tls_(tls) {}

  int Run() {
    const std::string& c = args_.command;
    // Commands on one task: a missing ID is a usage error, before any call.
    static const std::set<std::string> kOnOneTask = {
        "get",   "update", "delete", "assign",   "start",
        "pause", "resume", "cancel", "complete", "heartbeat"};
    if (kOnOneTask.count(c) > 0 && args_.positional.empty()) {
      return UsageError(c + " needs a task ID");
    }
    if (c == "create") return Create();
    if (c == "get") return PrintTask(client_.Get(Id()));
    if (c == "list") return List();
    if (c == "count") return Count();
    if (c == "update") return Update();
    if (c == "delete") return Delete();
    if (c == "assign") {
      if (!args_.Has("executor")) return UsageError("assign needs --executor");
      return PrintTask(client_.Assign(Id(), args_.Get("executor"), Etag()));
    }
    if (c == "start") return PrintTask(client_.Start(Id(), Lease(), Etag()));
    if (c == "pause") return PrintTask(client_.Pause(Id(), Lease(), Etag()));
    if (c == "resume") {
      return PrintTask(client_.Resume(Id(), Lease(), Etag()));
    }
    if (c == "cancel") {
      return PrintTask(client_.Cancel(Id(), Etag(), args_.Has("force")));
    }
    if (c == "watch") return Watch();
    if (c == "backup") return Backup();
    if (c == "acquire") return Acquire();
    if (c == "heartbeat") return Heartbeat();
    if (c == "work") return Work();
    if (c == "complete") {
      Task::ResultCode code;
      if (!Task::ResultCode_Parse(args_.Get("result"), &code) ||
          code == Task::RESULT_CODE_UNSPECIFIED) {
        return UsageError(
            "complete needs --result=ok|error|warning|timedout|abandoned");
      }
      return PrintTask(client_.Complete(Id(), code, Lease(), Etag()));
    }
    return UsageError(absl::StrCat("unknown command \"", c, "\""));
  }

  bool missing_id() const { return missing_id_; }

 private:
  std::string Id() {
    if (args_.positional.empty()) {
      missing_id_ = true;
      return "";
    }
    return args_.positional[0];
  }
  std::string Etag() { return args_.Get("etag"); }
  std::string Lease() { return args_.Get("lease"); }

  int Fail(const absl::Status& status) const {
    std::cerr << "taskctl: " << absl::StatusCodeToString(status.code()) << ": "
              << status.message() << "\n";
    if (status.code() == absl::StatusCode::kUnavailable) {
      std::cerr << (tls_ ? "(no TLS connection: check that taskd runs there, "
                           "--tls-ca, --tls-server-name, and the client "
                           "certificate if it requires one)\n"
                         : "(no connection: check that taskd runs there; if "
                           "it serves TLS, give --tls or --tls-ca)\n");
    }
    return 1;
  }

  int PrintTask(const absl::StatusOr<Task>& task) {
    if (missing_id_) return UsageError(args_.command + " needs a task ID");
    if (!task.ok()) return Fail(task.status());
    if (json_) {
      std::cout << taskd::ToJson(*task, true) << "\n";
    } else {
      std::cout << taskd::ToTable({*task});
      if (!task->lease_token().empty()) {
        std::cout << "lease token: " << task->lease_token() << "\n";
      }
    }
    return 0;
  }

  int Acquire() {
    if (!args_.Has("executor")) return UsageError("acquire needs --executor");
    absl::Duration wait = absl::ZeroDuration();
    if (args_.Has("wait") && (!absl::ParseDuration(args_.Get("wait"), &wait) ||
                              wait < absl::ZeroDuration())) {
      return UsageError("--wait must be a duration such as 30s");
    }
    absl::StatusOr<std::optional<Task>> task =
        client_.Acquire(args_.Get("executor"), args_.Get("filter"), wait);
    if (!task.ok()) return Fail(task.status());
    if (!task->has_value()) {
      std::cerr << "taskctl: no task to acquire"
                << (wait > absl::ZeroDuration()
                        ? absl::StrCat(" within ", absl::FormatDuration(wait))
                        : std::string())
                << "\n";
      return 3;
    }
    return PrintTask(**task);
  }

  int Heartbeat() {
    if (!args_.Has("lease")) {
      return UsageError("heartbeat needs --lease=TOKEN");
    }
    Task::Progress progress;
    bool with_progress = args_.Has("progress");
    if (with_progress) {
      std::pair<std::string, std::string> parts =
          absl::StrSplit(args_.Get("progress"), absl::MaxSplits('/', 1));
      int64_t current = 0, total = 0;
      if (!absl::SimpleAtoi(parts.first, &current) ||
          (!parts.second.empty() && !absl::SimpleAtoi(parts.second, &total))) {
        return UsageError("--progress must be CURRENT/TOTAL, e.g. 3/10");
      }
      progress.set_current(current);
      progress.set_total(total);
    }
    absl::StatusOr<tasks::v1::HeartbeatTaskResponse> answer =
        client_.Heartbeat(Id(), Lease(), with_progress ? &progress : nullptr);
    if (!answer.ok()) return Fail(answer.status());
    if (json_) {
      std::cout << taskd::ToJson(*answer, false) << "\n";
      return 0;
    }
    std::cout << "lease until: "
              << (answer->has_lease_expires_at()
                      ? absl::FormatTime(
                            absl::RFC3339_sec,
                            absl::FromUnixSeconds(
                                answer->lease_expires_at().seconds()),
                            absl::UTCTimeZone())
                      : std::string("(does not expire)"))
              << "\ncancel requested: "
              << (answer->cancel_requested() ? "yes" : "no") << "\n";
    return 0;
  }

  int Work() {
    if (!args_.Has("executor")) return UsageError("work needs --executor");
    if (!args_.Has("run")) return UsageError("work needs --run=COMMAND");
    taskd::ExecutorOptions options;
    options.executor_id = args_.Get("executor");
    options.filter = args_.Get("filter");
    options.client.deadline = client_options_.deadline;
    options.client.bearer_token = client_options_.bearer_token;
    if (args_.Has("max-tasks") &&
        (!absl::SimpleAtoi(args_.Get("max-tasks"), &options.max_tasks) ||
         options.max_tasks < 1)) {
      return UsageError("--max-tasks must be a positive number");
    }
    if (args_.Has("wait") &&
        (!absl::ParseDuration(args_.Get("wait"), &options.wait) ||
         options.wait <= absl::ZeroDuration())) {
      return UsageError("--wait must be a positive duration such as 30s");
    }
    const std::string command = args_.Get("run");
    const bool json = json_;
    options.on_done = [json](const Task& task, const absl::Status& status) {
      if (!status.ok()) {
        std::cerr << "taskctl: task " << task.id() << ": "
                  << absl::StatusCodeToString(status.code()) << ": "
                  << status.message() << "\n";
        return;
      }
      if (json) {
        std::cout << taskd::ToJson(task, false) << "\n" << std::flush;
      } else {
        std::cout << task.id() << " " << Task::State_Name(task.state()) << " "
                  << Task::ResultCode_Name(task.result_code()) << "\n"
                  << std::flush;
      }
    };
    taskd::Executor executor(channel_, options);
    // SIGINT or SIGTERM: stop the command (its process group), complete its
    // task as abandoned, and exit.
    ::signal(SIGINT, RequestStop);
    ::signal(SIGTERM, RequestStop);
    std::atomic<bool> done{false};
    std::thread stopper([&] {
      while (!done && !stop_requested) absl::SleepFor(absl::Milliseconds(20));
      if (stop_requested) executor.Stop();
    });
    absl::Status status = executor.Run(
        [&](taskd::TaskRun& run) { return RunCommand(command, run); });
    done = true;
    stopper.join();
    if (!status.ok()) return Fail(status);
    return 0;
  }

  int Create() {
    if (!args_.Has("type")) return UsageError("create needs --type");
    Task task;
    task.set_type(args_.Get("type"));
    task.set_id(args_.Get("id"));
    task.set_priority(args_.Get("priority"));
    task.set_policy_id(args_.Get("policy-id"));
    task.set_resource_id(args_.Get("resource-id"));
    task.set_tenant_id(args_.Get("tenant-id"));
    struct {
      const char* flag;
      google::protobuf::Duration* field;
    } timeouts[] = {
        {"queue-timeout", task.mutable_queue_timeout()},
        {"ack-timeout", task.mutable_ack_timeout()},
        {"heartbeat-interval", task.mutable_heart_beat_interval()},
        {"exec-timeout", task.mutable_exec_timeout()},
    };
    for (const auto& timeout : timeouts) {
      if (!args_.Has(timeout.flag)) continue;
      absl::Duration d;
      if (!absl::ParseDuration(args_.Get(timeout.flag), &d) ||
          d < absl::ZeroDuration()) {
        return UsageError(absl::StrCat("--", timeout.flag,
                                       " must be a duration such as 30s"));
      }
      *timeout.field = taskd::ToDuration(d);
    }
    if (!args_.Has("queue-timeout")) task.clear_queue_timeout();
    if (!args_.Has("ack-timeout")) task.clear_ack_timeout();
    if (!args_.Has("heartbeat-interval")) task.clear_heart_beat_interval();
    if (!args_.Has("exec-timeout")) task.clear_exec_timeout();
    if (args_.Has("max-assign-count")) {
      int32_t n = 0;
      if (!absl::SimpleAtoi(args_.Get("max-assign-count"), &n)) {
        return UsageError("--max-assign-count must be a number");
      }
      task.set_max_assign_count(n);
    }
    return PrintTask(client_.Create(task, args_.Get("request-id")));
  }

  int Update() {
    Task task;
    task.set_id(Id());
    std::vector<std::string> paths;
    for (auto [flag, path] :
         {std::pair{"type", "type"}, std::pair{"priority", "priority"},
          std::pair{"policy-id", "policy_id"},
          std::pair{"resource-id", "resource_id"}}) {
      if (!args_.Has(flag)) continue;
      paths.push_back(path);
      std::string value = args_.Get(flag);
      if (std::string(path) == "type") task.set_type(value);
      if (std::string(path) == "priority") task.set_priority(value);
      if (std::string(path) == "policy_id") task.set_policy_id(value);
      if (std::string(path) == "resource_id") task.set_resource_id(value);
    }
    if (paths.empty()) {
      return UsageError(
          "update needs one of --type, --priority, --policy-id, "
          "--resource-id");
    }
    return PrintTask(client_.Update(task, paths, Etag()));
  }

  int Delete() {
    std::string id = Id();
    if (missing_id_) return UsageError("delete needs a task ID");
    absl::Status status = client_.Delete(id, Etag());
    if (!status.ok()) return Fail(status);
    if (!json_) std::cout << "deleted " << id << "\n";
    return 0;
  }

  int Watch() {
    tasks::v1::WatchTasksRequest request;
    request.set_filter(args_.Get("filter"));
    request.set_send_initial_state(args_.Has("initial"));
    if (args_.Has("since")) {
      int64_t since = 0;
      if (!absl::SimpleAtoi(args_.Get("since"), &since) || since < 1) {
        return UsageError("--since must be a revision (a positive number)");
      }
      request.set_start_revision(since);
    }
    taskd::TaskWatch::Options watch_options;
    watch_options.bearer_token = bearer_token_;
    taskd::TaskWatch watch(channel_, request, watch_options);
    taskd::TaskWatch::Callbacks callbacks;
    bool header = false;
    auto print = [&](const tasks::v1::TaskEvent& event) {
      if (json_) {
        std::cout << taskd::ToJson(event, false) << std::endl;
        return;
      }
      if (!header) {
        std::cout << "REVISION  EVENT    ID  STATE  RESULT  EXECUTOR\n";
        header = true;
      }
      const Task& task = event.task();
      std::cout << event.revision() << "  "
                << tasks::v1::TaskEvent::Type_Name(event.type()) << "  "
                << task.id() << "  " << Task::State_Name(task.state()) << "  "
                << (task.result_code()
                        ? Task::ResultCode_Name(task.result_code())
                        : "-")
                << "  "
                << (task.executor_id().empty() ? "-" : task.executor_id())
                << std::endl;
    };
    // The initial state is printed once it is complete: if the stream breaks
    // before, it is sent again from its start, and printing as it came
    // would print some tasks twice.
    bool buffering = request.send_initial_state();
    std::vector<tasks::v1::TaskEvent> initial;
    callbacks.on_event = [&](const tasks::v1::TaskEvent& event) {
      if (buffering) {
        initial.push_back(event);
      } else {
        print(event);
      }
    };
    callbacks.on_initial_state_restart = [&] { initial.clear(); };
    callbacks.on_initial_state_complete = [&](int64_t revision) {
      for (const tasks::v1::TaskEvent& event : initial) print(event);
      initial.clear();
      buffering = false;
      std::cerr << "(initial state complete at revision " << revision << ")\n";
    };
    callbacks.on_reconnect = [&](const absl::Status& why,
                                 absl::Duration backoff) {
      std::cerr << "taskctl: watch interrupted ("
                << absl::StatusCodeToString(why.code()) << ": " << why.message()
                << "); resuming after revision " << watch.last_revision()
                << " in " << absl::FormatDuration(backoff) << "\n";
    };
    absl::Status status = watch.Run(callbacks);
    if (!status.ok()) return Fail(status);
    return 0;
  }

  int List() {
    tasks::v1::ListTasksRequest request;
    request.set_filter(args_.Get("filter"));
    request.set_order_by(args_.Get("order-by"));
    request.set_page_token(args_.Get("page-token"));
    bool all = args_.Has("all");
    int64_t limit = 0;
    if (args_.Has("limit") &&
        (!absl::SimpleAtoi(args_.Get("limit"), &limit) || limit < 1)) {
      return UsageError("--limit must be a positive number");
    }
    if (all && limit > 0)
      return UsageError("--all and --limit exclude each other");
    tasks::v1::ListTasksResponse merged;
    while (true) {
      if (limit > 0) {
        request.set_page_size(static_cast<int32_t>(
            std::min<int64_t>(limit - merged.tasks_size(), 1000)));
      }
      absl::StatusOr<tasks::v1::ListTasksResponse> page = client_.List(request);
      if (!page.ok()) return Fail(page.status());
      for (Task& task : *page->mutable_tasks()) {
        *merged.add_tasks() = std::move(task);
      }
      merged.set_next_page_token(page->next_page_token());
      bool want_more = all || (limit > 0 && merged.tasks_size() < limit);
      if (!want_more || page->next_page_token().empty()) break;
      request.set_page_token(page->next_page_token());
    }
    if (json_) {
      std::cout << taskd::ToJson(merged, true) << "\n";
    } else {
      std::cout << taskd::ToTable(
          {merged.tasks().begin(), merged.tasks().end()});
      if (!merged.next_page_token().empty()) {
        std::cerr << "(more: --page-token=" << merged.next_page_token()
                  << " or --all)\n";
      }
    }
    return 0;
  }

  int Backup() {
    if (args_.positional.empty()) return UsageError("backup needs a FILE");
    absl::StatusOr<taskd::TaskClient::BackupResult> saved =
        client_.Backup(args_.positional[0]);
    if (!saved.ok()) return Fail(saved.status());
    std::cout << args_.positional[0] << ": " << saved->size_bytes
              << " bytes, revision " << saved->revision << ", sha256 "
              << saved->sha256 << "\n";
    return 0;
  }

  int Count() {
    std::vector<std::string> group_by;
    if (args_.Has("group-by")) {
      group_by = absl::StrSplit(args_.Get("group-by"), ',', absl::SkipEmpty());
    }
    absl::StatusOr<tasks::v1::CountTasksResponse> counted =
        client_.Count(args_.Get("filter"), group_by);
    if (!counted.ok()) return Fail(counted.status());
    if (json_) {
      std::cout << taskd::ToJson(*counted, true) << "\n";
      return 0;
    }
    // One line per group: its values, then the count; "-" for unset.
    for (const tasks::v1::TaskCount& group : counted->groups()) {
      for (const std::string& value : group.values()) {
        std::cout << std::left << std::setw(14) << (value.empty() ? "-" : value)
                  << " ";
      }
      std::cout << group.count() << "\n";
    }
    if (counted->groups_size() == 0) std::cout << "0\n";
    std::cerr << "(revision " << counted->revision() << ")\n";
    return 0;
  }

  Args& args_;
  std::shared_ptr<grpc::Channel> channel_;
  taskd::TaskClient& client_;
  const bool json_;
  const std::string bearer_token_;
  const taskd::TaskClient::Options client_options_;
  const bool tls_;
  bool missing_id_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  Args args;
  std::string error;
  if (!Parse(argc, argv, &args, &error)) return UsageError(error);
  if (args.command.empty() || args.command == "help" || args.Has("help") ||
      args.Has("h")) {
    std::cout << kUsage;
    return args.command.empty() && !args.Has("help") && !args.Has("h") ? 2 : 0;
  }
  const char* env_server = std::getenv("TASKD_SERVER");
  std::string server = args.Get(
      "server", env_server != nullptr ? env_server : "127.0.0.1:50051");
  std::string output = args.Get("o", "table");
  if (output != "table" && output != "json") {
    return UsageError("-o must be table or json");
  }
  absl::Duration timeout;
  if (!absl::ParseDuration(args.Get("timeout", "10s"), &timeout) ||
      timeout <= absl::ZeroDuration()) {
    return UsageError("--timeout must be a duration such as 10s");
  }
  taskd::ChannelOptions channel_options;
  channel_options.address = server;
  if (std::string error = ChannelSecurity(args, &channel_options);
      !error.empty()) {
    return UsageError(error);
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      taskd::OpenChannel(channel_options);
  if (!channel.ok()) return UsageError(std::string(channel.status().message()));
  taskd::TaskClient::Options options;
  options.deadline = timeout;
  const char* env_token = std::getenv("TASKD_TOKEN");
  options.bearer_token =
      args.Get("token", env_token != nullptr ? env_token : "");
  taskd::TaskClient client(*channel, options);
  // Reject a misspelt flag before anything is sent.
  static const std::map<std::string, std::vector<std::string>> kFlags = {
      {"create",
       {"type", "id", "priority", "policy-id", "resource-id", "tenant-id",
        "request-id", "queue-timeout", "ack-timeout", "heartbeat-interval",
        "exec-timeout", "max-assign-count"}},
      {"get", {}},
      {"list", {"filter", "order-by", "limit", "page-token", "all"}},
      {"count", {"filter", "group-by"}},
      {"update", {"type", "priority", "policy-id", "resource-id", "etag"}},
      {"delete", {"etag"}},
      {"assign", {"executor", "etag"}},
      {"start", {"lease", "etag"}},
      {"pause", {"lease", "etag"}},
      {"resume", {"lease", "etag"}},
      {"cancel", {"etag", "force"}},
      {"complete", {"result", "lease", "etag"}},
      {"acquire", {"executor", "filter", "wait"}},
      {"heartbeat", {"lease", "progress"}},
      {"work", {"executor", "run", "filter", "wait", "max-tasks"}},
      {"watch", {"filter", "since", "initial"}},
      {"backup", {}},
  };
  auto allowed = kFlags.find(args.command);
  if (allowed == kFlags.end()) {
    return UsageError(absl::StrCat("unknown command \"", args.command, "\""));
  }
  for (const auto& [name, value] : args.flags) {
    if (kGlobalFlags.count(name) > 0) continue;
    if (std::find(allowed->second.begin(), allowed->second.end(), name) ==
        allowed->second.end()) {
      return UsageError(
          absl::StrCat("unknown flag --", name, " for ", args.command));
    }
  }
  Command command(&args, *channel, &client, output == "json", options,
                  channel_options.tls);
  return command.Run();
}
