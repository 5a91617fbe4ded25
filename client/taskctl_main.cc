// taskctl: the command line for taskd.
//
//   taskctl [--server=HOST:PORT] [-o table|json] COMMAND [ARGS] [--FLAG=VALUE]
//
// Run `taskctl help` for the commands. Exit status: 0 on success, 1 when the
// server answered with an error (printed as CODE: message), 2 for a usage
// error.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/channel.h"
#include "client/task_client.h"
#include "client/task_format.h"
#include "client/task_watch.h"

namespace {

using tasks::v1::Task;

constexpr char kUsage[] = R"(taskctl: the command line for taskd.

usage: taskctl [--server=HOST:PORT] [-o table|json] [--timeout=10s] COMMAND ...

commands:
  create --type=TYPE [--id=ID] [--priority=P] [--policy-id=UUID]
         [--resource-id=UUID] [--tenant-id=UUID] [--request-id=KEY]
  get ID                          (ID or UUID)
  list [--filter=EXPR] [--order-by=KEYS] [--limit=N] [--page-token=T] [--all]
  update ID [--type=T] [--priority=P] [--policy-id=UUID] [--resource-id=UUID]
  delete ID
  assign ID --executor=EXECUTOR
  start ID | pause ID | resume ID | cancel ID
  complete ID --result=ok|error|warning|timedout|abandoned
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
CODE: message), 2 usage error (including an unreadable --tls-* file).
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
                 name == "initial" || name == "tls") {
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
          taskd::TaskClient* client, bool json, std::string bearer_token,
          bool tls)
      : args_(*args),
        channel_(std::move(channel)),
        client_(*client),
        json_(json),
        bearer_token_(std::move(bearer_token)),
        tls_(tls) {}

  int Run() {
    const std::string& c = args_.command;
    // Commands on one task: a missing ID is a usage error, before any call.
    static const std::set<std::string> kOnOneTask = {
        "get",   "update", "delete", "assign",  "start",
        "pause", "resume", "cancel", "complete"};
    if (kOnOneTask.count(c) > 0 && args_.positional.empty()) {
      return UsageError(c + " needs a task ID");
    }
    if (c == "create") return Create();
    if (c == "get") return PrintTask(client_.Get(Id()));
    if (c == "list") return List();
    if (c == "update") return Update();
    if (c == "delete") return Delete();
    if (c == "assign") {
      if (!args_.Has("executor")) return UsageError("assign needs --executor");
      return PrintTask(client_.Assign(Id(), args_.Get("executor"), Etag()));
    }
    if (c == "start") return PrintTask(client_.Start(Id(), Etag()));
    if (c == "pause") return PrintTask(client_.Pause(Id(), Etag()));
    if (c == "resume") return PrintTask(client_.Resume(Id(), Etag()));
    if (c == "cancel") return PrintTask(client_.Cancel(Id(), Etag()));
    if (c == "watch") return Watch();
    if (c == "complete") {
      Task::ResultCode code;
      if (!Task::ResultCode_Parse(args_.Get("result"), &code) ||
          code == Task::RESULT_CODE_UNSPECIFIED) {
        return UsageError(
            "complete needs --result=ok|error|warning|timedout|abandoned");
      }
      return PrintTask(client_.Complete(Id(), code, Etag()));
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
    }
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

  Args& args_;
  std::shared_ptr<grpc::Channel> channel_;
  taskd::TaskClient& client_;
  const bool json_;
  const std::string bearer_token_;
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
        "request-id"}},
      {"get", {}},
      {"list", {"filter", "order-by", "limit", "page-token", "all"}},
      {"update", {"type", "priority", "policy-id", "resource-id", "etag"}},
      {"delete", {"etag"}},
      {"assign", {"executor", "etag"}},
      {"start", {"etag"}},
      {"pause", {"etag"}},
      {"resume", {"etag"}},
      {"cancel", {"etag"}},
      {"complete", {"result", "etag"}},
      {"watch", {"filter", "since", "initial"}},
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
  Command command(&args, *channel, &client, output == "json",
                  options.bearer_token, channel_options.tls);
  return command.Run();
}
