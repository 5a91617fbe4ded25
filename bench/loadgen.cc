// taskd_loadgen: drives a running taskd over gRPC, and measures the raw
// SQLite limit that taskd's write and read paths are compared against.
//
//   taskd_loadgen --scenario=create --concurrency=64 --duration=10s
//   taskd_loadgen --scenario=mix --watchers=1000 --server=127.0.0.1:50051
//   taskd_loadgen --scenario=watch --watchers=10000 --rate=200
//   taskd_loadgen --scenario=sqlite-insert --batch=64 --db=/tmp/raw.db
//
// gRPC scenarios are closed loops: --concurrency calls are kept in flight
// (spread over --connections separate HTTP/2 connections); each completion
// issues the next call from gRPC's callback thread, so that the generator
// itself stays cheap (the generated stub's callback API, Stub::async()).
//
//   create  CreateTask; --payload bytes go into type (up to 64) and id.
//   get     GetTask of random tasks among --prefill created first.
//   list    ListTasks, a page of 50 of one tenant's enqueued tasks (the
//           --prefill tasks are spread over --tenants tenants).
//   moves   assign, start, complete chains on the --prefill tasks; when
//           they run out a slot creates its next task itself.
//   mix     60% get, 30% moves (as above), 10% create.
//   watch   --watchers streams watch while writers create tasks, closed loop
//           at --concurrency or paced at --rate creates per second.
//
// Executor scenarios (issue 12): each of --concurrency slots is an executor.
//   acquire    AcquireTask (--acquire_wait), StartTask and CompleteTask(ok)
//              with the lease token, over the --prefill enqueued tasks: a
//              chain per task (chains_per_s; compare with moves, whose chain
//              is AssignTask, StartTask, CompleteTask by id). An acquire
//              that finds the queue empty counts as empty_acquires.
//   wake       the executors wait in AcquireTask (--acquire_wait, 30 s if
//              unset) on an empty queue while one creator creates tasks one
//              at a time, paced at --rate per second (200 if unset); per
//              task, the time from CreateTask's answer (and from its send)
//              to the arrival of the AcquireTask answer that carries it.
//              Each executor then starts and completes its task.
//   heartbeat  --prefill tasks with heartBeatInterval --heartbeat_interval
//              are acquired and started, then each gets a HeartbeatTask
//              every --heartbeat_interval, at evenly spread phases, from at
//              most --heartbeat_pool calls in flight; measured after
//              --warmup (let it cover an interval): heartbeat latency, lag
//              behind schedule, taskd's CPU per thread, and the revisions
//              taskd wrote (from two marker creates). --heartbeat_progress
//              sends a new progress in every heartbeat.
//
// --watchers also opens streams in the other scenarios (mix with 1,000
// watchers). --watch_filter: "none" (every watcher sees every change) or
// "tenant" (watcher i watches tenant i % --tenants); "auto" is none for the
// watch scenario and tenant otherwise. Commit-to-delivery delay is the
// watcher's receive time minus the task's updatedAt, which taskd stamps just
// before it queues the change for commit (same machine, same clock): it
// includes the commit itself.
//
// The peer (issue 15): etcd's KV service, through the same closed loops,
// pointed at etcd with --server. Requests are encoded by hand (no etcd
// protos here); each value is --etcd_value_bytes, the size of the Task
// CreateTask stores.
//   etcd-put    etcdserverpb.KV/Put of a new key each call (36 bytes, as
//               long as the UUID taskd gives a new task).
//   etcd-range  etcdserverpb.KV/Range of one random key among --prefill keys
//               put first (named as get's tasks); a miss counts as an error.
//
// Raw SQLite scenarios (no server; run them on the core taskd would get):
//   sqlite-insert  one task row and one history row per insert, --batch
//                  inserts per transaction, on a fresh database with taskd's
//                  own schema (created by opening the store), WAL,
//                  synchronous per --sync, checkpoints per
//                  --checkpoint_pages (SQLite's default unless given).
//   sqlite-get     point reads by id of --prefill rows, one connection.
//
// Output: a human-readable summary, then one JSON line (also appended to
// --json_out if set): throughput, p50/p90/p99/p99.9 latency in microseconds
// (and per method, where a scenario calls several), errors, client CPU, and
// with --server_pid the server's CPU (also per thread) and RSS.
#include <grpcpp/channel.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/histogram.h"
#include "storage/sqlite_query.h"
#include "storage/sqlite_task_store.h"
#include "tasks/v1/tasks.grpc.pb.h"

ABSL_FLAG(std::string, scenario, "create",
          "create, get, list, moves, mix, watch, acquire, wake, heartbeat, "
          "etcd-put, etcd-range, sqlite-insert, sqlite-get");
ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "taskd's address (etcd's for etcd-*); several, comma-separated "
          "(replicas on one PostgreSQL): connection i goes to the i-th, "
          "round robin");
ABSL_FLAG(std::string, watch_server, "",
          "where the --watchers streams go (comma-separated as --server); "
          "empty: --server. Writers on one replica and watchers on another "
          "time the delivery across replicas");
ABSL_FLAG(int, concurrency, 64, "calls kept in flight");
ABSL_FLAG(int, connections, 1,
          "separate HTTP/2 connections the calls are spread over");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10),
          "how long to measure (after --warmup)");
ABSL_FLAG(int64_t, count, 0,
          "stop after this many measured calls instead (0: use --duration)");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(2),
          "load applied before measuring starts");
ABSL_FLAG(int, payload, 0,
          "bytes of caller data per created task, in type (up to 64) and id "
          "(0: type \"backup\", id chosen by the server)");
ABSL_FLAG(int, watchers, 0, "WatchTasks streams held open during the run");
ABSL_FLAG(int, watch_connections, 4,
          "connections the watch streams are spread over (apart from the "
          "calls' --connections, as watchers are other clients)");
ABSL_FLAG(std::string, watch_filter, "auto", "none, tenant or auto");
ABSL_FLAG(double, rate, 0,
          "watch scenario: creates per second (0: closed loop at "
          "--concurrency); wake: the creator's creates per second (0: 200)");
ABSL_FLAG(absl::Duration, acquire_wait, absl::ZeroDuration(),
          "acquire, wake: AcquireTask's wait (wake: 30s if 0)");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(10),
          "heartbeat: the tasks' heartBeatInterval, and how often each gets "
          "a heartbeat");
ABSL_FLAG(int, heartbeat_pool, 256,
          "heartbeat: heartbeat calls in flight at most");
ABSL_FLAG(bool, heartbeat_progress, false,
          "heartbeat: a new progress in every heartbeat");
ABSL_FLAG(int, prefill, 10000,
          "tasks created before get, list, moves, mix, acquire and heartbeat "
          "(keys put before etcd-range, rows before sqlite-get)");
ABSL_FLAG(int, etcd_value_bytes, 178,
          "etcd-*: bytes of each value; 178 is what CreateTask stores per "
          "task (its history row's serialized Task: 174 to 179 bytes with "
          "--payload=0, measured on a taskd database), so that a put carries "
          "what a create commits");
ABSL_FLAG(int, tenants, 100, "tenants the tasks are spread over");
ABSL_FLAG(absl::Duration, call_deadline, absl::Seconds(60),
          "deadline of each unary call; 0: none (taskd then applies its "
          "--default_deadline to writes)");
ABSL_FLAG(std::string, label, "", "name of the run in the JSON line");
ABSL_FLAG(std::string, json_out, "", "file to append the JSON line to");
ABSL_FLAG(int, server_pid, 0,
          "taskd's pid: report its CPU use during the run and its RSS");
ABSL_FLAG(std::string, db, "/tmp/taskd-loadgen-raw.db",
          "sqlite-*: the scratch database (replaced)");
ABSL_FLAG(std::string, sync, "full", "sqlite-*: synchronous, full or normal");
ABSL_FLAG(int, batch, 1, "sqlite-insert: inserts per transaction");
ABSL_FLAG(int, checkpoint_pages, 1000,
          "sqlite-*: PRAGMA wal_autocheckpoint (SQLite's default 1000; taskd "
          "uses 10000, see --checkpoint_pages of taskd)");

namespace taskd {
namespace {

using tasks::v1::AcquireTaskRequest;
using tasks::v1::AcquireTaskResponse;
using tasks::v1::AssignTaskRequest;
using tasks::v1::CompleteTaskRequest;
using tasks::v1::CreateTaskRequest;
using tasks::v1::GetTaskRequest;
using tasks::v1::HeartbeatTaskRequest;
using tasks::v1::HeartbeatTaskResponse;
using tasks::v1::ListTasksRequest;
using tasks::v1::ListTasksResponse;
using tasks::v1::StartTaskRequest;
using tasks::v1::Task;
using tasks::v1::TaskEvent;
using tasks::v1::TaskService;
using tasks::v1::WatchTasksRequest;
using tasks::v1::WatchTasksResponse;
using Clock = std::chrono::steady_clock;

// ---- Measuring ------------------------------------------------------------

using taskd::bench::Histogram;

struct CpuTimes {
  double user = 0, system = 0;
};

CpuTimes OwnCpu() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return {usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6,
          usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6};
}

// utime + stime of `pid` in seconds, from /proc/PID/stat; 0 if unreadable.
double ProcessCpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  double ticks = 0;
  // After "pid (comm) ": state is field 3; utime and stime are 14 and 15.
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Resident set size of `pid` in KiB (VmRSS), 0 if unreadable.
int64_t ProcessRssKib(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return 0;
}

// Per thread id: the thread's name and its utime + stime in seconds.
using ThreadTimes = std::map<int, std::pair<std::string, double>>;

// Of each thread of `pid` (/proc/PID/task/TID/stat); empty if unreadable.
ThreadTimes ThreadCpuSeconds(int pid) {
  ThreadTimes threads;
  std::vector<int> tids;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/task"), error)) {
    int tid = 0;
    if (absl::SimpleAtoi(entry.path().filename().string(), &tid)) {
      tids.push_back(tid);
    }
  }
  for (int tid : tids) {
    std::ifstream in(absl::StrCat("/proc/", pid, "/task/", tid, "/stat"));
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    size_t open = text.find('(');
    size_t paren = text.rfind(')');
    if (open == std::string::npos || paren == std::string::npos) continue;
    std::istringstream fields(text.substr(paren + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14 || i == 15) ticks += std::stod(field);
    }
    threads[tid] = {text.substr(open + 1, paren - open - 1),
                    ticks / static_cast<double>(sysconf(_SC_CLK_TCK))};
  }
  return threads;
}

// The CPU each thread used between two ThreadCpuSeconds snapshots, as a
// fraction of `wall` seconds, busiest first, as a JSON object keyed
// "name/tid" (threads under 0.5% left out).
std::string ThreadCpuJson(const ThreadTimes& before, const ThreadTimes& after,
                          double wall) {
  std::vector<std::pair<double, std::string>> used;
  for (const auto& [tid, named] : after) {
    auto it = before.find(tid);
    double seconds =
        named.second - (it == before.end() ? 0 : it->second.second);
    if (wall > 0 && seconds / wall >= 0.005) {
      used.emplace_back(seconds / wall, absl::StrCat(named.first, "/", tid));
    }
  }
  std::sort(used.rbegin(), used.rend());
  std::string json = "{";
  for (const auto& [fraction, name] : used) {
    if (json.size() > 1) json += ",";
    absl::StrAppendFormat(&json, "\"%s\":%.3f", name, fraction);
  }
  return json + "}";
}

// One run's figures, printed as text and as one JSON line.
struct Report {
  std::string scenario;
  double seconds = 0;
  int64_t ops = 0;
  int64_t errors = 0;
  const Histogram* latency = nullptr;
  std::string op_unit = "call";       // what ops counts
  std::string latency_unit = "call";  // what one latency sample times
  // Extra fields, already JSON-encoded values.
  std::vector<std::pair<std::string, std::string>> extra;

  void Add(const std::string& key, double value) {
    extra.emplace_back(key, absl::StrFormat("%.6g", value));
  }
  void AddInt(const std::string& key, int64_t value) {
    extra.emplace_back(key, absl::StrCat(value));
  }
  void AddString(const std::string& key, const std::string& value) {
    extra.emplace_back(key, absl::StrCat("\"", value, "\""));
  }
  void AddJson(const std::string& key, const std::string& json) {
    extra.emplace_back(key, json);
  }
};

// The CPU the load generator and taskd (`server_pid`, 0: none) have used so
// far; two samples around a window give the figures of the window.
struct CpuSample {
  CpuTimes own;
  double server = 0;
  ThreadTimes server_threads;

  static CpuSample Take(int server_pid) {
    CpuSample sample;
    sample.own = OwnCpu();
    if (server_pid != 0) {
      sample.server = ProcessCpuSeconds(server_pid);
      sample.server_threads = ThreadCpuSeconds(server_pid);
    }
    return sample;
  }
};

// client_cpu, server_cpu and server_cpu_by_thread over `seconds` of wall
// time between two samples.
void AddCpuFigures(const CpuSample& before, const CpuSample& after,
                   int server_pid, double seconds, Report* report) {
  report->Add("client_cpu", (after.own.user + after.own.system -
                             before.own.user - before.own.system) /
                                seconds);
  if (server_pid == 0) return;
  report->Add("server_cpu", (after.server - before.server) / seconds);
  report->AddJson(
      "server_cpu_by_thread",
      ThreadCpuJson(before.server_threads, after.server_threads, seconds));
}

void Print(const Report& report) {
  double rate = report.seconds > 0 ? report.ops / report.seconds : 0;
  std::string label = absl::GetFlag(FLAGS_label);
  std::cout << absl::StrFormat("%s: %d %ss in %.2f s = %.0f/s, %d errors\n",
                               label.empty() ? report.scenario : label,
                               report.ops, report.op_unit, report.seconds, rate,
                               report.errors);
  std::string json = absl::StrFormat(
      "{\"label\":\"%s\",\"scenario\":\"%s\",\"ops\":%d,\"seconds\":%.3f,"
      "\"ops_per_s\":%.1f,\"errors\":%d",
      label, report.scenario, report.ops, report.seconds, rate, report.errors);
  if (report.latency != nullptr && report.latency->Count() > 0) {
    const Histogram& h = *report.latency;
    std::cout << absl::StrFormat(
        "  latency per %s (us): p50 %d  p90 %d  p99 %d  p99.9 %d\n",
        report.latency_unit, h.Quantile(0.5), h.Quantile(0.9), h.Quantile(0.99),
        h.Quantile(0.999));
    absl::StrAppendFormat(&json,
                          ",\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,"
                          "\"p999_us\":%d",
                          h.Quantile(0.5), h.Quantile(0.9), h.Quantile(0.99),
                          h.Quantile(0.999));
  }
  for (const auto& [key, value] : report.extra) {
    std::cout << "  " << key << ": " << value << "\n";
    absl::StrAppend(&json, ",\"", key, "\":", value);
  }
  json += "}";
  std::cout << json << std::endl;
  std::string out = absl::GetFlag(FLAGS_json_out);
  if (!out.empty()) {
    std::ofstream file(out, std::ios::app);
    file << json << "\n";
  }
}

// ---- Task data ------------------------------------------------------------

std::string TenantId(int i) {
  return absl::StrFormat("3f2a9c1e-5b7d-4e8f-9a0b-%012d", i);
}

// A random tag that keeps the ids of this run apart from earlier runs
// against the same database.
std::string RunTag() {
  std::random_device device;
  return absl::StrFormat("%08x", device());
}

// The caller's part of a new task; `serial` makes the id unique when the
// payload asks for one.
Task NewTask(const std::string& id_prefix, int64_t serial, int tenants) {
  int payload = absl::GetFlag(FLAGS_payload);
  Task task;
  task.set_tenant_id(TenantId(static_cast<int>(serial % tenants)));
  task.set_priority("normal");
  if (payload <= 0) {
    task.set_type("backup");
    return task;
  }
  int type_bytes = std::min(payload, 64);
  task.set_type(std::string(type_bytes, 't'));
  if (payload > type_bytes) {
    std::string id = absl::StrCat(id_prefix, serial, "-");
    int id_bytes = std::min(payload - type_bytes, 128);
    if (static_cast<int>(id.size()) < id_bytes) id.resize(id_bytes, 'x');
    task.set_id(id);
  }
  return task;
}

// ---- The gRPC side ----------------------------------------------------------

// `connections` channels, spread round robin over the comma-separated
// addresses in `servers` (default --server).
std::vector<std::shared_ptr<grpc::Channel>> Connect(int connections,
                                                    std::string servers = "") {
  if (servers.empty()) servers = absl::GetFlag(FLAGS_server);
  const std::vector<std::string> addresses = absl::StrSplit(servers, ',');
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < std::max(1, connections); ++i) {
    grpc::ChannelArguments args;
    // A subchannel pool of its own per channel: a separate TCP connection
    // each, instead of one shared by every channel to the same address.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 << 20);
    channels.push_back(
        grpc::CreateCustomChannel(addresses[i % addresses.size()],
                                  grpc::InsecureChannelCredentials(), args));
  }
  for (auto& channel : channels) {
    if (!channel->WaitForConnected(
            absl::ToChronoTime(absl::Now() + absl::Seconds(10)))) {
      std::cerr << "taskd_loadgen: cannot connect to " << servers << "\n";
      std::exit(1);
    }
  }
  return channels;
}

enum Method {
  kCreate,
  kGet,
  kList,
  kAssign,
  kStart,
  kComplete,
  kAcquire,
  kHeartbeat,
  kPut,    // etcd's
  kRange,  // etcd's
  kMethods
};
constexpr const char* kMethodNames[kMethods] = {
    "create",   "get",     "list",      "assign", "start",
    "complete", "acquire", "heartbeat", "put",    "range"};

bool IsExecutorScenario(const std::string& scenario) {
  return scenario == "acquire" || scenario == "wake" || scenario == "heartbeat";
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             Clock::now().time_since_epoch())
      .count();
}

// wake: when the task with one id was created and reached an executor, in
// NowMicros(); -1 if not (yet).
struct WakeTimes {
  int64_t sent = -1;
  int64_t acked = -1;
  int64_t received = -1;
};

// Shared by every slot of one run.
struct RunState {
  std::string scenario;
  std::string tag;
  int tenants = 100;
  std::vector<std::string> prefilled;     // ids, for get and moves (keys,
                                          // for etcd-range)
  std::atomic<size_t> next_prefilled{0};  // moves take tasks in order
  std::atomic<int64_t> serial{0};         // for created ids
  std::atomic<bool> recording{false};
  std::atomic<bool> stopping{false};
  int64_t count_limit = 0;
  // etcd-*: a generic stub per connection (slot i uses i % size, as with
  // the task stubs) and the value every put carries.
  std::vector<std::unique_ptr<grpc::GenericStub>> etcd;
  std::string etcd_value;
  Histogram latency;
  std::array<Histogram, kMethods> latency_by_method;
  std::atomic<int64_t> ops{0};
  std::atomic<int64_t> errors{0};
  std::array<std::atomic<int64_t>, kMethods> by_method{};
  // Executor scenarios.
  absl::Duration acquire_wait;
  std::atomic<int64_t> empty_acquires{0};     // while recording
  std::atomic<int64_t> unrecorded_errors{0};  // while not recording
  // heartbeat's set-up: a slot whose acquire finds nothing stops, and each
  // started task is handed over here (instead of being completed).
  bool stop_when_empty = false;
  std::function<void(const std::string& id, const std::string& lease_token)>
      on_started;
  // wake: per task id.
  absl::Mutex wake_mu;
  std::unordered_map<std::string, WakeTimes> wake ABSL_GUARDED_BY(wake_mu);
  absl::Mutex mu;
  int in_flight ABSL_GUARDED_BY(mu) = 0;
  std::string first_error ABSL_GUARDED_BY(mu);
  // Paced writers (--rate): a call may start only with a ticket.
  bool paced = false;
  int64_t tickets ABSL_GUARDED_BY(mu) = 0;
  std::vector<struct Slot*> parked ABSL_GUARDED_BY(mu);
  // With watchers: when each write's response arrived (revision, unix
  // microseconds), to time delivery from the acknowledgement too.
  bool record_acks = false;
  absl::Mutex acks_mu;
  std::vector<std::pair<int64_t, int64_t>> acks ABSL_GUARDED_BY(acks_mu);
};

// The measured window: --duration with `run` recording, between two CPU
// samples. Returns its length in seconds.
double MeasureWindow(RunState* run, int server_pid, CpuSample* before,
                     CpuSample* after) {
  *before = CpuSample::Take(server_pid);
  run->recording.store(true);
  const absl::Time begin = absl::Now();
  absl::SleepFor(absl::GetFlag(FLAGS_duration));
  run->recording.store(false);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - begin);
  *after = CpuSample::Take(server_pid);
  return seconds;
}

// One call in flight at a time, and what it needs to issue the next one.
struct Slot {
  RunState* run = nullptr;
  TaskService::Stub* stub = nullptr;
  int index = 0;
  std::mt19937_64 rng;
  // Replaced by each call; guarded so that CancelSlots() can reach a call
  // that waits (wake's AcquireTask).
  absl::Mutex context_mu;
  std::unique_ptr<grpc::ClientContext> context ABSL_GUARDED_BY(context_mu);
  Clock::time_point started;
  Method method = kCreate;
  CreateTaskRequest create;
  GetTaskRequest get;
  ListTasksRequest list;
  AssignTaskRequest assign;
  StartTaskRequest start;
  CompleteTaskRequest complete;
  AcquireTaskRequest acquire;
  Task task;
  ListTasksResponse page;
  AcquireTaskResponse acquired;
  grpc::ByteBuffer etcd_request;
  grpc::ByteBuffer etcd_response;
  // moves: the slot's task and the next move on it (kAssign, kStart,
  // kComplete), or kCreate when it needs a new task. Executor scenarios:
  // kAcquire (or kCreate, at first) when the executor needs a task.
  std::string chain_id;
  // The lease token of the chain's assignment (AssignTask's or
  // AcquireTask's answer), for StartTask and CompleteTask.
  std::string lease_token;
  Method next_move = kCreate;
};

// Executor scenarios: what follows a call of the executor's chain.
// Returns false if the slot stops (heartbeat's set-up found no task left).
bool NextExecutorMove(Slot* slot, const grpc::Status& status) {
  RunState* run = slot->run;
  if (!status.ok()) {
    slot->next_move = kAcquire;  // give the task up
    return true;
  }
  switch (slot->method) {
    case kAcquire:
      if (!slot->acquired.has_task()) {
        if (run->recording.load(std::memory_order_relaxed)) {
          run->empty_acquires.fetch_add(1, std::memory_order_relaxed);
        }
        slot->next_move = kAcquire;
        return !run->stop_when_empty;
      }
      slot->chain_id = slot->acquired.task().id();
      slot->lease_token = slot->acquired.task().lease_token();
      slot->next_move = kStart;
      if (run->scenario == "wake") {
        int64_t now = NowMicros();
        absl::MutexLock lock(&run->wake_mu);
        run->wake[slot->chain_id].received = now;
      }
      return true;
    case kStart:
      if (run->on_started) {
        run->on_started(slot->chain_id, slot->lease_token);
        slot->next_move = kAcquire;
      } else {
        slot->next_move = kComplete;
      }
      return true;
    default:
      slot->next_move = kAcquire;
      return true;
  }
}

// ---- etcd, the peer ---------------------------------------------------------
// Vendoring etcd's protos (and gogoproto's) for two requests is not worth it:
// a PutRequest is key (field 1) and value (field 2), a RangeRequest key
// (field 1), both length-delimited; the answers are not decoded.

constexpr char kEtcdPut[] = "/etcdserverpb.KV/Put";
constexpr char kEtcdRange[] = "/etcdserverpb.KV/Range";

// `value` null: a RangeRequest of `key`; else a PutRequest.
grpc::ByteBuffer EtcdRequest(const std::string& key, const std::string* value) {
  std::string bytes;
  auto append_field = [&bytes](int field, const std::string& data) {
    bytes.push_back(static_cast<char>(field << 3 | 2));  // length-delimited
    for (size_t n = data.size();; n >>= 7) {             // varint length
      bytes.push_back(static_cast<char>(n < 0x80 ? n : (n & 0x7f) | 0x80));
      if (n < 0x80) break;
    }
    bytes += data;
  };
  append_field(1, key);
  if (value != nullptr) append_field(2, *value);
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// A blocking call, for the prefill (GenericStub has only the callback form).
grpc::Status EtcdCall(grpc::GenericStub* stub, const char* method,
                      const grpc::ByteBuffer& request) {
  grpc::ClientContext context;
  context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_call_deadline)));
  grpc::ByteBuffer response;
  grpc::Status result;
  absl::Notification done;
  stub->UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                  [&](grpc::Status status) {
                    result = std::move(status);
                    done.Notify();
                  });
  done.WaitForNotification();
  return result;
}

void Issue(Slot* slot);

void Done(Slot* slot, const grpc::Status& status) {
  RunState* run = slot->run;
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(
                  Clock::now() - slot->started)
                  .count();
  bool is_move = slot->method == kAssign || slot->method == kStart ||
                 slot->method == kComplete;
  bool keep_going = true;
  if (IsExecutorScenario(run->scenario)) {
    keep_going = NextExecutorMove(slot, status);
  } else if (status.ok()) {
    if (slot->method == kAssign) slot->lease_token = slot->task.lease_token();
    if (slot->method == kCreate &&
        (run->scenario == "moves" ||
         (run->scenario == "mix" && slot->next_move == kCreate &&
          slot->chain_id == "-"))) {
      slot->chain_id = slot->task.id();
      slot->next_move = kAssign;
    } else if (is_move) {
      slot->next_move = slot->method == kAssign  ? kStart
                        : slot->method == kStart ? kComplete
                                                 : kCreate;
    }
  } else if (is_move) {
    slot->next_move = kCreate;  // give the task up
  }
  if (run->record_acks && status.ok() && slot->method != kGet &&
      slot->method != kList) {
    int64_t now = absl::ToUnixMicros(absl::Now());
    absl::MutexLock lock(&run->acks_mu);
    run->acks.emplace_back(slot->task.revision(), now);
  }
  if (run->recording.load(std::memory_order_relaxed)) {
    run->latency.Record(took);
    run->latency_by_method[slot->method].Record(took);
    int64_t n = run->ops.fetch_add(1, std::memory_order_relaxed) + 1;
    run->by_method[slot->method].fetch_add(1, std::memory_order_relaxed);
    if (!status.ok()) {
      run->errors.fetch_add(1, std::memory_order_relaxed);
      absl::MutexLock lock(&run->mu);
      if (run->first_error.empty()) {
        run->first_error = absl::StrCat(kMethodNames[slot->method], ": ",
                                        static_cast<int>(status.error_code()),
                                        " ", status.error_message());
      }
    }
    if (run->count_limit > 0 && n >= run->count_limit) {
      run->stopping.store(true);
    }
  } else if (!status.ok()) {
    run->unrecorded_errors.fetch_add(1, std::memory_order_relaxed);
  }
  if (run->stopping.load() || !keep_going) {
    absl::MutexLock lock(&run->mu);
    --run->in_flight;
    return;
  }
  if (run->paced) {
    absl::MutexLock lock(&run->mu);
    if (run->tickets == 0) {
      run->parked.push_back(slot);
      return;
    }
    --run->tickets;
  }
  Issue(slot);
}

// Picks the slot's next move call: take a prefilled task, or create one.
void NextMove(Slot* slot) {
  RunState* run = slot->run;
  if (slot->next_move == kCreate) {
    size_t i = run->next_prefilled.fetch_add(1);
    if (i < run->prefilled.size()) {
      slot->chain_id = run->prefilled[i];
      slot->next_move = kAssign;
    } else {
      slot->method = kCreate;
      slot->chain_id = "-";
      return;
    }
  }
  slot->method = slot->next_move;
}

void Issue(Slot* slot) {
  RunState* run = slot->run;
  const std::string& scenario = run->scenario;
  if (scenario == "create" || scenario == "watch") {
    slot->method = kCreate;
  } else if (scenario == "get") {
    slot->method = kGet;
  } else if (scenario == "list") {
    slot->method = kList;
  } else if (scenario == "moves") {
    NextMove(slot);
  } else if (scenario == "etcd-put") {
    slot->method = kPut;
  } else if (scenario == "etcd-range") {
    slot->method = kRange;
  } else if (IsExecutorScenario(scenario)) {
    slot->method = slot->next_move == kCreate ? kAcquire : slot->next_move;
  } else {  // mix
    int dice = static_cast<int>(slot->rng() % 100);
    if (dice < 60) {
      slot->method = kGet;
    } else if (dice < 90) {
      NextMove(slot);
    } else {
      slot->method = kCreate;
    }
  }
  grpc::ClientContext* context;
  {
    absl::MutexLock lock(&slot->context_mu);
    slot->context = std::make_unique<grpc::ClientContext>();
    context = slot->context.get();
    // CancelSlots() sets stopping before it cancels: a call issued after
    // it looked is cancelled here.
    if (run->stopping.load()) context->TryCancel();
  }
  absl::Duration deadline = absl::GetFlag(FLAGS_call_deadline);
  if (slot->method == kAcquire && deadline > absl::ZeroDuration()) {
    deadline += run->acquire_wait;
  }
  if (deadline > absl::ZeroDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  }
  auto done = [slot](grpc::Status status) { Done(slot, status); };
  auto* async = slot->stub->async();
  slot->started = Clock::now();
  switch (slot->method) {
    case kCreate: {
      int64_t serial = run->serial.fetch_add(1);
      *slot->create.mutable_task() = NewTask(run->tag, serial, run->tenants);
      async->CreateTask(context, &slot->create, &slot->task, done);
      break;
    }
    case kGet:
      slot->get.set_id(run->prefilled[slot->rng() % run->prefilled.size()]);
      async->GetTask(context, &slot->get, &slot->task, done);
      break;
    case kList:
      slot->list.set_page_size(50);
      slot->list.set_filter(absl::StrCat("tenant_id = \"",
                                         TenantId(slot->rng() % run->tenants),
                                         "\" AND state = \"enqueued\""));
      async->ListTasks(context, &slot->list, &slot->page, done);
      break;
    case kAssign:
      slot->assign.set_id(slot->chain_id);
      slot->assign.set_executor_id("agent-7");
      async->AssignTask(context, &slot->assign, &slot->task, done);
      break;
    case kStart:
      slot->start.set_id(slot->chain_id);
      slot->start.set_lease_token(slot->lease_token);
      async->StartTask(context, &slot->start, &slot->task, done);
      break;
    case kComplete:
      slot->complete.set_id(slot->chain_id);
      slot->complete.set_result_code(Task::ok);
      slot->complete.set_lease_token(slot->lease_token);
      async->CompleteTask(context, &slot->complete, &slot->task, done);
      break;
    case kAcquire:
      slot->acquire.set_executor_id(
          absl::StrCat("executor-", run->tag, "-", slot->index));
      *slot->acquire.mutable_wait() = google::protobuf::Duration();
      if (run->acquire_wait > absl::ZeroDuration()) {
        slot->acquire.mutable_wait()->set_seconds(
            absl::ToInt64Seconds(run->acquire_wait));
        slot->acquire.mutable_wait()->set_nanos(static_cast<int32_t>(
            absl::ToInt64Nanoseconds(run->acquire_wait % absl::Seconds(1))));
      }
      slot->acquired.Clear();
      async->AcquireTask(context, &slot->acquire, &slot->acquired, done);
      break;
    case kPut:
      // A new key every time, 36 bytes like a created task's UUID.
      slot->etcd_request = EtcdRequest(
          absl::StrFormat("%s-%027d", run->tag, run->serial.fetch_add(1)),
          &run->etcd_value);
      run->etcd[slot->index % run->etcd.size()]->UnaryCall(
          context, kEtcdPut, grpc::StubOptions(), &slot->etcd_request,
          &slot->etcd_response, done);
      break;
    case kRange:
      slot->etcd_request = EtcdRequest(
          run->prefilled[slot->rng() % run->prefilled.size()], nullptr);
      run->etcd[slot->index % run->etcd.size()]->UnaryCall(
          context, kEtcdRange, grpc::StubOptions(), &slot->etcd_request,
          &slot->etcd_response, [slot](grpc::Status status) {
            // A miss is an answer without the kv: shorter than the value.
            if (status.ok() &&
                slot->etcd_response.Length() < slot->run->etcd_value.size()) {
              status = grpc::Status(grpc::StatusCode::NOT_FOUND, "no key");
            }
            Done(slot, status);
          });
      break;
    default:
      break;
  }
}

// One WatchTasks stream, counting events and their delivery delay.
class Watcher final : public grpc::ClientReadReactor<WatchTasksResponse> {
 public:
  // `sampled`: also keep (revision, receive time) of every event.
  Watcher(TaskService::Stub* stub, const std::string& filter, RunState* run,
          Histogram* delay, std::atomic<int64_t>* events,
          std::atomic<int>* ready, bool sampled)
      : run_(run),
        delay_(delay),
        events_(events),
        ready_(ready),
        sampled_(sampled) {
    request_.set_filter(filter);
    stub->async()->WatchTasks(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (!seen_first_) {
      seen_first_ = true;
      ready_->fetch_add(1);
    }
    if (run_->recording.load(std::memory_order_relaxed)) {
      int64_t now = absl::ToUnixMicros(absl::Now());
      for (const TaskEvent& event : response_.events()) {
        const auto& at = event.task().updated_at();
        int64_t stamped = at.seconds() * 1'000'000 + at.nanos() / 1000;
        delay_->Record(now - stamped);
        if (sampled_) received_.emplace_back(event.revision(), now);
      }
      events_->fetch_add(response_.events_size(), std::memory_order_relaxed);
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

  void Cancel() { context_.TryCancel(); }

  // (revision, receive time) of each event, if sampled; read after
  // WaitDone().
  const std::vector<std::pair<int64_t, int64_t>>& received() const {
    return received_;
  }

  grpc::Status WaitDone() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return status_;
  }

 private:
  RunState* const run_;
  Histogram* const delay_;
  std::atomic<int64_t>* const events_;
  std::atomic<int>* const ready_;
  const bool sampled_;
  std::vector<std::pair<int64_t, int64_t>> received_;
  grpc::ClientContext context_;
  WatchTasksRequest request_;
  WatchTasksResponse response_;
  bool seen_first_ = false;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// Runs `slots` closed loops until stopped; returns the measured seconds.
double RunLoops(RunState* run, std::vector<std::unique_ptr<Slot>>& slots,
                absl::Duration warmup, absl::Duration duration, double rate) {
  run->paced = rate > 0;
  {
    absl::MutexLock lock(&run->mu);
    run->in_flight = static_cast<int>(slots.size());
  }
  if (run->paced) {
    absl::MutexLock lock(&run->mu);
    for (auto& slot : slots) run->parked.push_back(slot.get());
  } else {
    for (auto& slot : slots) Issue(slot.get());
  }
  // The pacer hands out tickets at `rate` and wakes parked slots.
  std::thread pacer;
  if (run->paced) {
    pacer = std::thread([run, rate] {
      auto begin = Clock::now();
      int64_t issued = 0;
      while (!run->stopping.load()) {
        double elapsed =
            std::chrono::duration<double>(Clock::now() - begin).count();
        int64_t due = static_cast<int64_t>(elapsed * rate) - issued;
        std::vector<Slot*> wake;
        if (due > 0) {
          absl::MutexLock lock(&run->mu);
          issued += due;
          run->tickets += due;
          while (run->tickets > 0 && !run->parked.empty()) {
            wake.push_back(run->parked.back());
            run->parked.pop_back();
            --run->tickets;
          }
          // Tickets not taken now (every slot busy) are dropped: the
          // rate is an upper bound, not a backlog to catch up on.
          run->tickets = std::min<int64_t>(run->tickets, 1);
        }
        for (Slot* slot : wake) Issue(slot);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  absl::SleepFor(warmup);
  run->recording.store(true);
  absl::Time begin = absl::Now();
  if (run->count_limit > 0) {
    while (!run->stopping.load()) absl::SleepFor(absl::Milliseconds(5));
  } else {
    absl::SleepFor(duration);
  }
  run->recording.store(false);
  double seconds = absl::ToDoubleSeconds(absl::Now() - begin);
  run->stopping.store(true);
  if (pacer.joinable()) pacer.join();
  absl::MutexLock lock(&run->mu);
  run->in_flight -= static_cast<int>(run->parked.size());
  run->parked.clear();
  run->mu.Await(absl::Condition(
      +[](RunState* r)
           ABSL_NO_THREAD_SAFETY_ANALYSIS { return r->in_flight == 0; },
      run));
  return seconds;
}

std::vector<std::unique_ptr<Slot>> MakeSlots(
    RunState* run, int n,
    const std::vector<std::unique_ptr<TaskService::Stub>>& stubs) {
  std::vector<std::unique_ptr<Slot>> slots;
  for (int i = 0; i < n; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->run = run;
    slot->stub = stubs[i % stubs.size()].get();
    slot->index = i;
    slot->rng.seed(static_cast<uint64_t>(i) * 7919 + 17);
    slots.push_back(std::move(slot));
  }
  return slots;
}

// Calls and chains per method, and each method's latency where the
// scenario calls several.
void AddMethodFigures(const RunState& run, double seconds, Report* report) {
  int methods = 0;
  for (int m = 0; m < kMethods; ++m) {
    if (run.by_method[m].load() > 0) {
      ++methods;
      report->AddInt(absl::StrCat("calls_", kMethodNames[m]),
                     run.by_method[m].load());
    }
  }
  if (IsExecutorScenario(run.scenario) || run.scenario == "moves") {
    // A chain ends with its CompleteTask.
    report->Add("chains_per_s",
                seconds > 0 ? run.by_method[kComplete].load() / seconds : 0);
  }
  if (IsExecutorScenario(run.scenario)) {
    report->AddInt("empty_acquires", run.empty_acquires.load());
  }
  if (methods < 2) return;
  for (int m = 0; m < kMethods; ++m) {
    const Histogram& h = run.latency_by_method[m];
    if (h.Count() == 0) continue;
    report->AddInt(absl::StrCat(kMethodNames[m], "_p50_us"), h.Quantile(0.5));
    report->AddInt(absl::StrCat(kMethodNames[m], "_p99_us"), h.Quantile(0.99));
  }
}

void AddFirstError(RunState* run, Report* report) {
  absl::MutexLock lock(&run->mu);
  if (run->first_error.empty()) return;
  std::string escaped;
  for (char c : run->first_error) {
    if (c == '"' || c == '\\') escaped += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) escaped += c;
  }
  report->AddString("first_error", escaped);
}

// Creates --prefill tasks with known ids through the server; with a
// `heart_beat_interval`, tasks that have it. etcd-*: puts keys so named.
void Prefill(RunState* run,
             const std::vector<std::unique_ptr<TaskService::Stub>>& stubs,
             int n, absl::Duration heart_beat_interval = absl::ZeroDuration()) {
  std::atomic<int> next{0};
  std::atomic<int64_t> failed{0};
  std::vector<std::thread> threads;
  int per_stub = 16;
  run->prefilled.resize(n);
  for (int i = 0; i < n; ++i) {
    run->prefilled[i] = absl::StrCat("p-", run->tag, "-", i);
  }
  absl::Time begin = absl::Now();
  for (size_t s = 0; s < stubs.size(); ++s) {
    for (int t = 0; t < per_stub; ++t) {
      threads.emplace_back([&, s] {
        while (true) {
          int i = next.fetch_add(1);
          if (i >= n) return;
          if (!run->etcd.empty()) {
            grpc::Status status =
                EtcdCall(run->etcd[s].get(), kEtcdPut,
                         EtcdRequest(run->prefilled[i], &run->etcd_value));
            if (!status.ok()) failed.fetch_add(1);
            continue;
          }
          CreateTaskRequest request;
          Task task;
          task.set_id(run->prefilled[i]);
          task.set_type(i % 3 == 0 ? "replication" : "backup");
          task.set_priority("normal");
          task.set_tenant_id(TenantId(i % run->tenants));
          if (heart_beat_interval > absl::ZeroDuration()) {
            task.mutable_heart_beat_interval()->set_seconds(
                absl::ToInt64Seconds(heart_beat_interval));
          }
          *request.mutable_task() = task;
          grpc::ClientContext context;
          Task response;
          grpc::Status status =
              stubs[s]->CreateTask(&context, request, &response);
          if (!status.ok()) failed.fetch_add(1);
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  std::cout << absl::StrFormat("prefill: %d tasks in %.1f s (%d failed)\n", n,
                               absl::ToDoubleSeconds(absl::Now() - begin),
                               failed.load())
            << std::flush;  // executor-suite waits for these lines
}

int RunGrpc(const std::string& scenario) {
  int concurrency = std::max(1, absl::GetFlag(FLAGS_concurrency));
  int n_watchers = absl::GetFlag(FLAGS_watchers);
  int server_pid = absl::GetFlag(FLAGS_server_pid);
  auto channels = Connect(absl::GetFlag(FLAGS_connections));
  std::vector<std::unique_ptr<TaskService::Stub>> stubs;
  for (auto& channel : channels) stubs.push_back(TaskService::NewStub(channel));

  RunState run;
  run.scenario = scenario;
  run.tag = RunTag();
  run.tenants = std::max(1, absl::GetFlag(FLAGS_tenants));
  run.count_limit = absl::GetFlag(FLAGS_count);
  run.acquire_wait = absl::GetFlag(FLAGS_acquire_wait);
  if (scenario.rfind("etcd-", 0) == 0) {
    for (auto& channel : channels) {
      run.etcd.push_back(std::make_unique<grpc::GenericStub>(channel));
    }
    run.etcd_value.assign(std::max(1, absl::GetFlag(FLAGS_etcd_value_bytes)),
                          'v');
  }
  if (scenario == "get" || scenario == "list" || scenario == "moves" ||
      scenario == "mix" || scenario == "acquire" || scenario == "etcd-range") {
    Prefill(&run, stubs, std::max(1, absl::GetFlag(FLAGS_prefill)));
  }

  // Watchers first, each told its position before the load starts.
  std::string filter_mode = absl::GetFlag(FLAGS_watch_filter);
  if (filter_mode == "auto")
    filter_mode = scenario == "watch" ? "none" : "tenant";
  Histogram delay;
  std::atomic<int64_t> events{0};
  std::atomic<int> ready{0};
  std::vector<std::unique_ptr<Watcher>> watchers;
  std::vector<std::shared_ptr<grpc::Channel>> watch_channels;
  std::vector<std::unique_ptr<TaskService::Stub>> watch_stubs;
  if (n_watchers > 0) {
    watch_channels = Connect(absl::GetFlag(FLAGS_watch_connections),
                             absl::GetFlag(FLAGS_watch_server));
    for (auto& channel : watch_channels) {
      watch_stubs.push_back(TaskService::NewStub(channel));
    }
  }
  for (int i = 0; i < n_watchers; ++i) {
    std::string filter;
    if (filter_mode == "tenant") {
      filter = absl::StrCat("tenant_id = \"", TenantId(i % run.tenants), "\"");
    }
    // Every watcher times events from updatedAt; the first ten also from
    // the writer's acknowledgement (kept per event, so only a sample).
    watchers.push_back(std::make_unique<Watcher>(
        watch_stubs[i % watch_stubs.size()].get(), filter, &run, &delay,
        &events, &ready, /*sampled=*/i < 10));
  }
  absl::Time wait_until = absl::Now() + absl::Seconds(60);
  while (ready.load() < n_watchers && absl::Now() < wait_until) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (ready.load() < n_watchers) {
    std::cerr << "taskd_loadgen: only " << ready.load() << " of " << n_watchers
              << " watchers started\n";
  }

  run.record_acks = n_watchers > 0;
  auto slots = MakeSlots(&run, concurrency, stubs);
  const CpuSample cpu_before = CpuSample::Take(server_pid);
  double seconds = RunLoops(
      &run, slots, absl::GetFlag(FLAGS_warmup), absl::GetFlag(FLAGS_duration),
      scenario == "watch" ? absl::GetFlag(FLAGS_rate) : 0);
  const CpuSample cpu_after = CpuSample::Take(server_pid);
  // Measured while the watchers are still open.
  int64_t server_rss = server_pid ? ProcessRssKib(server_pid) : 0;
  // The run's totals; cpu counts warmup and drain too, so it is given as a
  // fraction of the whole wall time of the loops.
  Report report;
  report.scenario = scenario;
  report.seconds = seconds;
  report.ops = run.ops.load();
  report.errors = run.errors.load();
  report.latency = &run.latency;
  report.AddInt("concurrency", concurrency);
  report.AddInt("connections", static_cast<int64_t>(channels.size()));
  report.AddInt("payload", absl::GetFlag(FLAGS_payload));
  if (!run.etcd.empty()) {
    report.AddInt("value_bytes", static_cast<int64_t>(run.etcd_value.size()));
  }
  AddMethodFigures(run, seconds, &report);
  double wall = seconds + absl::ToDoubleSeconds(absl::GetFlag(FLAGS_warmup));
  AddCpuFigures(cpu_before, cpu_after, server_pid, wall, &report);
  for (auto& watcher : watchers) watcher->Cancel();
  for (auto& watcher : watchers) watcher->WaitDone();
  Histogram after_ack;
  int64_t before_ack = 0;
  {
    absl::MutexLock lock(&run.acks_mu);
    std::map<int64_t, int64_t> acked(run.acks.begin(), run.acks.end());
    for (auto& watcher : watchers) {
      for (const auto& [revision, received] : watcher->received()) {
        auto it = acked.find(revision);
        if (it == acked.end()) continue;
        if (received < it->second) ++before_ack;
        after_ack.Record(received - it->second);
      }
    }
  }
  if (n_watchers > 0) {
    report.AddInt("watchers", n_watchers);
    report.AddInt("watch_connections",
                  static_cast<int64_t>(watch_channels.size()));
    report.AddString("watch_filter", filter_mode);
    report.AddInt("events_delivered", events.load());
    report.Add("events_per_s", events.load() / seconds);
    report.AddInt("delivery_p50_us", delay.Quantile(0.5));
    report.AddInt("delivery_p90_us", delay.Quantile(0.9));
    report.AddInt("delivery_p99_us", delay.Quantile(0.99));
    report.AddInt("delivery_p999_us", delay.Quantile(0.999));
    // From the writer's acknowledgement instead (a lower bound of the delay
    // from the commit, which happens before both): sampled watchers.
    report.AddInt("after_ack_samples", after_ack.Count());
    report.AddInt("after_ack_p50_us", after_ack.Quantile(0.5));
    report.AddInt("after_ack_p99_us", after_ack.Quantile(0.99));
    report.AddInt("delivered_before_ack", before_ack);
  }
  if (scenario == "watch" && absl::GetFlag(FLAGS_rate) > 0) {
    report.Add("rate", absl::GetFlag(FLAGS_rate));
  }
  if (server_pid != 0) report.AddInt("server_rss_kib", server_rss);
  AddFirstError(&run, &report);
  Print(report);
  return 0;
}

// ---- Executors: wake-up and heartbeats --------------------------------------

// Stops the slots, cancelling the calls they have in flight (a waiting
// AcquireTask would otherwise hold the slot for its whole wait).
void CancelSlots(RunState* run, std::vector<std::unique_ptr<Slot>>& slots) {
  run->stopping.store(true);
  for (auto& slot : slots) {
    absl::MutexLock lock(&slot->context_mu);
    if (slot->context != nullptr) slot->context->TryCancel();
  }
  absl::MutexLock lock(&run->mu);
  run->mu.Await(absl::Condition(
      +[](RunState* r)
           ABSL_NO_THREAD_SAFETY_ANALYSIS { return r->in_flight == 0; },
      run));
}

// The exact quantile q of sorted `values` (0 if empty).
int64_t SortedQuantile(const std::vector<int64_t>& values, double q) {
  if (values.empty()) return 0;
  return values[static_cast<size_t>(q *
                                    static_cast<double>(values.size() - 1))];
}

int RunWake() {
  int executors = std::max(1, absl::GetFlag(FLAGS_concurrency));
  int server_pid = absl::GetFlag(FLAGS_server_pid);
  double rate = absl::GetFlag(FLAGS_rate) > 0 ? absl::GetFlag(FLAGS_rate) : 200;
  auto channels = Connect(absl::GetFlag(FLAGS_connections));
  std::vector<std::unique_ptr<TaskService::Stub>> stubs;
  for (auto& channel : channels) stubs.push_back(TaskService::NewStub(channel));
  // The creator is another client: a connection of its own.
  auto creator_channels = Connect(1);
  auto creator = TaskService::NewStub(creator_channels[0]);

  RunState run;
  run.scenario = "wake";
  run.tag = RunTag();
  run.tenants = std::max(1, absl::GetFlag(FLAGS_tenants));
  run.acquire_wait = absl::GetFlag(FLAGS_acquire_wait);
  if (run.acquire_wait <= absl::ZeroDuration()) {
    run.acquire_wait = absl::Seconds(30);
  }
  auto slots = MakeSlots(&run, executors, stubs);
  {
    absl::MutexLock lock(&run.mu);
    run.in_flight = executors;
  }
  for (auto& slot : slots) Issue(slot.get());
  absl::SleepFor(absl::Milliseconds(200));  // let the acquires park

  // One create at a time, each started at its turn (1/rate apart) or as
  // soon as the one before it returned, if later.
  std::atomic<bool> stop_creating{false};
  Histogram create_latency;
  std::atomic<int64_t> created{0}, create_errors{0};
  std::thread creator_thread([&] {
    auto begin = Clock::now();
    for (int64_t i = 0; !stop_creating.load(); ++i) {
      std::this_thread::sleep_until(
          begin +
          std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / rate)));
      CreateTaskRequest request;
      *request.mutable_task() = NewTask(run.tag, i, run.tenants);
      grpc::ClientContext context;
      context.set_deadline(
          absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_call_deadline)));
      Task task;
      int64_t sent = NowMicros();
      grpc::Status status = creator->CreateTask(&context, request, &task);
      int64_t acked = NowMicros();
      if (!run.recording.load()) continue;
      if (!status.ok()) {
        create_errors.fetch_add(1);
        absl::MutexLock lock(&run.mu);
        if (run.first_error.empty()) {
          run.first_error = absl::StrCat("create: ", status.error_message());
        }
        continue;
      }
      create_latency.Record(acked - sent);
      created.fetch_add(1);
      absl::MutexLock lock(&run.wake_mu);
      WakeTimes& times = run.wake[task.id()];
      times.sent = sent;
      times.acked = acked;
    }
  });

  absl::SleepFor(absl::GetFlag(FLAGS_warmup));
  CpuSample cpu_before, cpu_after;
  const double seconds =
      MeasureWindow(&run, server_pid, &cpu_before, &cpu_after);
  stop_creating.store(true);
  creator_thread.join();
  absl::SleepFor(absl::Seconds(1));  // the last tasks reach their executors
  CancelSlots(&run, slots);

  // Per task: from CreateTask's answer (clamped at 0: an executor may get
  // the task before the creator gets its answer) and from its send.
  Histogram from_ack;
  std::vector<int64_t> after_ack, after_send;
  int64_t missing = 0, before_ack = 0;
  {
    absl::MutexLock lock(&run.wake_mu);
    for (const auto& [id, times] : run.wake) {
      if (times.sent < 0) continue;  // created outside the measured window
      if (times.received < 0) {
        ++missing;
        continue;
      }
      int64_t delay = times.received - times.acked;
      if (delay < 0) ++before_ack;
      delay = std::max<int64_t>(delay, 0);
      from_ack.Record(delay);
      after_ack.push_back(delay);
      after_send.push_back(times.received - times.sent);
    }
  }
  std::sort(after_ack.begin(), after_ack.end());
  std::sort(after_send.begin(), after_send.end());
  Report report;
  report.scenario = "wake";
  report.seconds = seconds;
  report.ops = created.load();
  report.errors = run.errors.load() + create_errors.load() + missing;
  report.latency = &from_ack;
  report.op_unit = "task";
  report.latency_unit = "task from CreateTask's answer to AcquireTask's";
  report.AddInt("executors", executors);
  report.AddInt("connections", static_cast<int64_t>(channels.size()));
  report.Add("rate", rate);
  report.Add("acquire_wait_s", absl::ToDoubleSeconds(run.acquire_wait));
  report.AddInt("tasks_woken", static_cast<int64_t>(after_ack.size()));
  report.AddInt("tasks_missing", missing);
  report.AddInt("received_before_create_answer", before_ack);
  report.AddInt("wake_p50_us", SortedQuantile(after_ack, 0.5));
  report.AddInt("wake_p99_us", SortedQuantile(after_ack, 0.99));
  report.AddInt("wake_max_us", SortedQuantile(after_ack, 1.0));
  report.AddInt("from_send_p50_us", SortedQuantile(after_send, 0.5));
  report.AddInt("from_send_p99_us", SortedQuantile(after_send, 0.99));
  report.AddInt("from_send_max_us", SortedQuantile(after_send, 1.0));
  report.AddInt("create_p50_us", create_latency.Quantile(0.5));
  report.AddInt("create_p99_us", create_latency.Quantile(0.99));
  AddMethodFigures(run, seconds, &report);
  AddCpuFigures(cpu_before, cpu_after, server_pid, seconds, &report);
  if (server_pid != 0) {
    report.AddInt("server_rss_kib", ProcessRssKib(server_pid));
  }
  AddFirstError(&run, &report);
  Print(report);
  return 0;
}

// Sends each leased task a HeartbeatTask every `interval`, at phases spread
// evenly over the interval, from at most `pool` calls in flight; a beat
// that finds the pool full goes out late (its lag is measured).
class HeartbeatPump {
 public:
  HeartbeatPump(TaskService::Stub* stub, RunState* run, absl::Duration interval,
                int pool, bool progress)
      : stub_(stub),
        run_(run),
        interval_us_(absl::ToInt64Microseconds(interval)),
        pool_(std::max(1, pool)),
        progress_(progress) {}
  HeartbeatPump(const HeartbeatPump&) = delete;
  HeartbeatPump& operator=(const HeartbeatPump&) = delete;
  ~HeartbeatPump() { Stop(); }

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }

  // Stops sending and waits for the calls in flight.
  void Stop() {
    stopping_.store(true);
    if (thread_.joinable()) thread_.join();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* n) { return *n == 0; }, &in_flight_));
  }

  // A task just started: its first beat comes within one interval (at a
  // phase of the golden ratio's sequence, so that phases stay even however
  // fast the tasks start), then one every interval.
  void Add(const std::string& id, const std::string& lease_token) {
    absl::MutexLock lock(&mu_);
    size_t index = leases_.size();
    leases_.push_back({id, lease_token, 0});
    double phase = std::fmod(static_cast<double>(index) * 0.6180339887, 1.0);
    beats_.push(
        {NowMicros() + static_cast<int64_t>(phase * interval_us_), index});
  }

  size_t tasks() {
    absl::MutexLock lock(&mu_);
    return leases_.size();
  }

  // Figures of the calls that ended while run->recording.
  const Histogram& latency() const { return latency_; }
  const Histogram& lag() const { return lag_; }
  int64_t ok() const { return ok_.load(); }
  int64_t errors() const { return errors_.load(); }
  std::string first_error() {
    absl::MutexLock lock(&mu_);
    return first_error_;
  }

 private:
  struct Lease {
    std::string id;
    std::string token;
    int64_t beats;
  };
  struct Beat {
    int64_t due;  // NowMicros()
    size_t index;
    bool operator>(const Beat& other) const { return due > other.due; }
  };
  struct Call {
    grpc::ClientContext context;
    HeartbeatTaskRequest request;
    HeartbeatTaskResponse response;
    Clock::time_point started;
  };

  void Loop() {
    while (!stopping_.load()) {
      std::vector<Call*> calls;
      int64_t now = NowMicros();
      {
        absl::MutexLock lock(&mu_);
        while (!beats_.empty() && beats_.top().due <= now &&
               in_flight_ < pool_) {
          Beat beat = beats_.top();
          beats_.pop();
          beats_.push({beat.due + interval_us_, beat.index});
          ++in_flight_;
          Lease& lease = leases_[beat.index];
          auto* call = new Call;
          call->request.set_id(lease.id);
          call->request.set_lease_token(lease.token);
          if (progress_) {
            call->request.mutable_progress()->set_current(++lease.beats);
            call->request.mutable_progress()->set_total(1'000'000);
          }
          if (run_->recording.load(std::memory_order_relaxed)) {
            lag_.Record(now - beat.due);
          }
          calls.push_back(call);
        }
      }
      for (Call* call : calls) Send(call);
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }

  void Send(Call* call) {
    if (absl::Duration deadline = absl::GetFlag(FLAGS_call_deadline);
        deadline > absl::ZeroDuration()) {
      call->context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    }
    call->started = Clock::now();
    stub_->async()->HeartbeatTask(
        &call->context, &call->request, &call->response,
        [this, call](grpc::Status status) { Finish(call, status); });
  }

  void Finish(Call* call, const grpc::Status& status) {
    auto took = std::chrono::duration_cast<std::chrono::microseconds>(
                    Clock::now() - call->started)
                    .count();
    if (run_->recording.load(std::memory_order_relaxed)) {
      latency_.Record(took);
      if (status.ok()) {
        ok_.fetch_add(1, std::memory_order_relaxed);
      } else {
        errors_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    delete call;
    absl::MutexLock lock(&mu_);
    if (!status.ok() && first_error_.empty()) {
      first_error_ =
          absl::StrCat("heartbeat: ", static_cast<int>(status.error_code()),
                       " ", status.error_message());
    }
    --in_flight_;
  }

  TaskService::Stub* const stub_;
  RunState* const run_;
  const int64_t interval_us_;
  const int pool_;
  const bool progress_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  Histogram latency_;
  Histogram lag_;
  std::atomic<int64_t> ok_{0};
  std::atomic<int64_t> errors_{0};

  absl::Mutex mu_;
  std::vector<Lease> leases_ ABSL_GUARDED_BY(mu_);
  std::priority_queue<Beat, std::vector<Beat>, std::greater<Beat>> beats_
      ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
};

// The store's revision now: that of a fresh create (which is itself one
// revision), or -1.
int64_t MarkerRevision(TaskService::Stub* stub, const std::string& tag) {
  CreateTaskRequest request;
  *request.mutable_task() = NewTask(tag, 0, 1);
  grpc::ClientContext context;
  Task task;
  grpc::Status status = stub->CreateTask(&context, request, &task);
  return status.ok() ? task.revision() : -1;
}

int RunHeartbeat() {
  int server_pid = absl::GetFlag(FLAGS_server_pid);
  absl::Duration interval = absl::GetFlag(FLAGS_heartbeat_interval);
  int n = std::max(1, absl::GetFlag(FLAGS_prefill));
  auto channels = Connect(absl::GetFlag(FLAGS_connections));
  std::vector<std::unique_ptr<TaskService::Stub>> stubs;
  for (auto& channel : channels) stubs.push_back(TaskService::NewStub(channel));

  RunState run;
  run.scenario = "heartbeat";
  run.tag = RunTag();
  run.tenants = std::max(1, absl::GetFlag(FLAGS_tenants));
  run.stop_when_empty = true;
  Prefill(&run, stubs, n, interval);

  // Set-up: the executors acquire and start every task; each started task
  // joins the pump at once (the heartbeat timeout, 3 intervals, runs from
  // the start).
  HeartbeatPump pump(stubs[0].get(), &run, interval,
                     absl::GetFlag(FLAGS_heartbeat_pool),
                     absl::GetFlag(FLAGS_heartbeat_progress));
  run.on_started = [&pump](const std::string& id, const std::string& token) {
    pump.Add(id, token);
  };
  pump.Start();
  int executors = std::max(1, absl::GetFlag(FLAGS_concurrency));
  auto slots = MakeSlots(&run, executors, stubs);
  absl::Time setup_begin = absl::Now();
  {
    absl::MutexLock lock(&run.mu);
    run.in_flight = executors;
  }
  for (auto& slot : slots) Issue(slot.get());
  {
    absl::MutexLock lock(&run.mu);
    run.mu.Await(absl::Condition(
        +[](RunState* r)
             ABSL_NO_THREAD_SAFETY_ANALYSIS { return r->in_flight == 0; },
        &run));
  }
  double setup_seconds = absl::ToDoubleSeconds(absl::Now() - setup_begin);
  int64_t started = static_cast<int64_t>(pump.tasks());
  std::cout << absl::StrFormat(
      "set-up: %d tasks acquired and started in %.1f s (%.0f/s)\n", started,
      setup_seconds, started / setup_seconds);
  std::cout.flush();

  absl::SleepFor(absl::GetFlag(FLAGS_warmup));
  int64_t revision_before = MarkerRevision(stubs[0].get(), run.tag);
  CpuSample cpu_before, cpu_after;
  const double seconds =
      MeasureWindow(&run, server_pid, &cpu_before, &cpu_after);
  int64_t revision_after = MarkerRevision(stubs[0].get(), run.tag);
  pump.Stop();

  Report report;
  report.scenario = "heartbeat";
  report.seconds = seconds;
  report.ops = pump.ok() + pump.errors();
  report.errors = pump.errors();
  report.latency = &pump.latency();
  report.op_unit = "heartbeat";
  report.AddInt("tasks", started);
  report.Add("heartbeat_interval_s", absl::ToDoubleSeconds(interval));
  report.Add("expected_per_s", started / absl::ToDoubleSeconds(interval));
  report.AddInt("heartbeat_pool", absl::GetFlag(FLAGS_heartbeat_pool));
  report.AddInt("progress", absl::GetFlag(FLAGS_heartbeat_progress) ? 1 : 0);
  report.AddInt("lag_p50_us", pump.lag().Quantile(0.5));
  report.AddInt("lag_p99_us", pump.lag().Quantile(0.99));
  report.AddInt("lag_max_us", pump.lag().Quantile(1.0));
  // Between the two markers, less the second marker's own revision.
  int64_t revisions = revision_before >= 0 && revision_after >= 0
                          ? revision_after - revision_before - 1
                          : -1;
  report.AddInt("revisions", revisions);
  report.Add("revisions_per_s", revisions / seconds);
  report.Add("setup_seconds", setup_seconds);
  report.AddInt("setup_errors", run.unrecorded_errors.load());
  AddCpuFigures(cpu_before, cpu_after, server_pid, seconds, &report);
  if (server_pid != 0) {
    report.AddInt("server_rss_kib", ProcessRssKib(server_pid));
  }
  if (std::string error = pump.first_error(); !error.empty()) {
    absl::MutexLock lock(&run.mu);
    if (run.first_error.empty()) run.first_error = error;
  }
  AddFirstError(&run, &report);
  Print(report);
  return 0;
}

// ---- The raw SQLite limit --------------------------------------------------

void Check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::cerr << "taskd_loadgen: " << what << ": " << sqlite3_errmsg(db)
              << "\n";
    std::exit(1);
  }
}

// A fresh database with taskd's schema: the store creates and migrates it.
void CreateSchema(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) {
    std::remove((path + suffix).c_str());
  }
  SqliteTaskStoreOptions options;
  options.path = path;
  absl::StatusOr<std::unique_ptr<TaskStore>> store =
      OpenSqliteTaskStore(options);
  if (!store.ok()) {
    std::cerr << "taskd_loadgen: " << store.status() << "\n";
    std::exit(1);
  }
}

sqlite3* OpenRaw(const std::string& path, bool read_only) {
  sqlite3* db = nullptr;
  int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  Check(
      db,
      sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr),
      "open");
  std::string pragmas =
      absl::StrCat("PRAGMA journal_mode=WAL; PRAGMA synchronous=",
                   absl::GetFlag(FLAGS_sync) == "normal" ? "NORMAL" : "FULL",
                   "; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=",
                   absl::GetFlag(FLAGS_checkpoint_pages), ";");
  if (read_only) {
    pragmas = "PRAGMA temp_store=MEMORY;";
  }
  Check(db, sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, nullptr),
        "pragmas");
  return db;
}

// A random version 4 UUID, as taskd gives every task (and uses as its id
// when the caller gives none): random keys land all over the id and uuid
// indexes, as they do in taskd.
std::string RandomUuid(std::mt19937_64& rng) {
  uint64_t high = rng(), low = rng();
  high = (high & ~0xf000ULL) | 0x4000ULL;
  low = (low & ~(3ULL << 62)) | (2ULL << 62);
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", high >> 32,
                         (high >> 16) & 0xffff, high & 0xffff, low >> 48,
                         low & 0xffffffffffffULL);
}

// Writes rows like taskd's Create: the task row, the history row with the
// serialised task, the revision counter once per transaction.
class RawWriter {
 public:
  explicit RawWriter(sqlite3* db, std::vector<std::string>* ids = nullptr)
      : db_(db), ids_(ids), rng_(std::random_device()()) {
    Prepare(&insert_task_,
            "INSERT INTO tasks (id, uuid, type, state, result_code, priority, "
            "policy_id, resource_id, executor_id, tenant_id, enqueued_at, "
            "started_at, completed_at, updated_at, revision, request_id) "
            "VALUES (?1, ?2, ?3, ?4, 0, ?5, '', '', '', ?6, ?7, 0, 0, ?7, ?8, "
            "'')");
    Prepare(&insert_change_,
            "INSERT INTO changes (revision, kind, task_id, task, previous, "
            "committed_at) VALUES (?1, 1, ?2, ?3, NULL, ?4)");
    Prepare(&bump_, "UPDATE meta SET value = ?1 WHERE key = 'revision'");
    Prepare(&begin_, "BEGIN IMMEDIATE");
    Prepare(&commit_, "COMMIT");
  }
  ~RawWriter() {
    for (sqlite3_stmt* s :
         {insert_task_, insert_change_, bump_, begin_, commit_}) {
      sqlite3_finalize(s);
    }
  }

  // One transaction of `n` inserts.
  void Batch(int n, const std::string& tag) {
    Step(begin_, "begin");
    for (int i = 0; i < n; ++i) {
      int64_t revision = ++revision_;
      Task task = NewTask(tag, revision, 100);
      task.set_uuid(RandomUuid(rng_));
      if (task.id().empty()) task.set_id(task.uuid());
      if (ids_ != nullptr) ids_->push_back(task.id());
      int64_t now = absl::ToUnixMicros(absl::Now());
      task.set_state(Task::enqueued);
      task.mutable_enqueued_at()->set_seconds(now / 1'000'000);
      *task.mutable_updated_at() = task.enqueued_at();
      task.set_revision(revision);
      Text(insert_task_, 1, task.id());
      Text(insert_task_, 2, task.uuid());
      Text(insert_task_, 3, task.type());
      sqlite3_bind_int64(insert_task_, 4, task.state());
      sqlite3_bind_int64(insert_task_, 5, 2);
      Text(insert_task_, 6, task.tenant_id());
      sqlite3_bind_int64(insert_task_, 7, now);
      sqlite3_bind_int64(insert_task_, 8, revision);
      Step(insert_task_, "insert task");
      std::string blob = task.SerializeAsString();
      sqlite3_bind_int64(insert_change_, 1, revision);
      Text(insert_change_, 2, task.id());
      sqlite3_bind_blob64(insert_change_, 3, blob.data(), blob.size(),
                          SQLITE_TRANSIENT);
      sqlite3_bind_int64(insert_change_, 4, now);
      Step(insert_change_, "insert change");
    }
    sqlite3_bind_int64(bump_, 1, revision_);
    Step(bump_, "bump revision");
    Step(commit_, "commit");
  }

 private:
  void Prepare(sqlite3_stmt** statement, const char* sql) {
    Check(db_, sqlite3_prepare_v2(db_, sql, -1, statement, nullptr), sql);
  }
  void Text(sqlite3_stmt* statement, int index, const std::string& value) {
    sqlite3_bind_text(statement, index, value.data(),
                      static_cast<int>(value.size()), SQLITE_TRANSIENT);
  }
  void Step(sqlite3_stmt* statement, const char* what) {
    Check(db_, sqlite3_step(statement), what);
    sqlite3_reset(statement);
  }

  sqlite3* const db_;
  std::vector<std::string>* const ids_;
  std::mt19937_64 rng_;
  sqlite3_stmt* insert_task_ = nullptr;
  sqlite3_stmt* insert_change_ = nullptr;
  sqlite3_stmt* bump_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  int64_t revision_ = 0;
};

int RunSqliteInsert() {
  std::string path = absl::GetFlag(FLAGS_db);
  int batch = std::max(1, absl::GetFlag(FLAGS_batch));
  CreateSchema(path);
  sqlite3* db = OpenRaw(path, false);
  Histogram latency;
  int64_t inserts = 0;
  double seconds = 0;
  {
    RawWriter writer(db);
    std::string tag = RunTag();
    absl::Time warm_until = absl::Now() + absl::GetFlag(FLAGS_warmup);
    while (absl::Now() < warm_until) writer.Batch(batch, tag);
    int64_t limit = absl::GetFlag(FLAGS_count);
    absl::Time begin = absl::Now();
    absl::Time end = begin + absl::GetFlag(FLAGS_duration);
    CpuTimes cpu_before = OwnCpu();
    while (limit > 0 ? inserts < limit : absl::Now() < end) {
      auto start = Clock::now();
      writer.Batch(batch, tag);
      latency.Record(std::chrono::duration_cast<std::chrono::microseconds>(
                         Clock::now() - start)
                         .count());
      inserts += batch;
    }
    seconds = absl::ToDoubleSeconds(absl::Now() - begin);
    CpuTimes cpu_after = OwnCpu();
    Report report;
    report.scenario = "sqlite-insert";
    report.seconds = seconds;
    report.ops = inserts;
    report.latency = &latency;
    report.op_unit = "insert";
    report.latency_unit = "transaction";
    report.AddInt("batch", batch);
    report.AddString("sync", absl::GetFlag(FLAGS_sync));
    report.AddInt("checkpoint_pages", absl::GetFlag(FLAGS_checkpoint_pages));
    report.AddInt("payload", absl::GetFlag(FLAGS_payload));
    report.Add("cpu", (cpu_after.user + cpu_after.system - cpu_before.user -
                       cpu_before.system) /
                          seconds);
    report.AddString("latency_is", "per transaction");
    Print(report);
  }
  sqlite3_close(db);
  return 0;
}

int RunSqliteGet() {
  std::string path = absl::GetFlag(FLAGS_db);
  int rows = std::max(1, absl::GetFlag(FLAGS_prefill));
  CreateSchema(path);
  std::string tag = RunTag();
  std::vector<std::string> ids;
  {
    sqlite3* db = OpenRaw(path, false);
    {
      RawWriter writer(db, &ids);
      for (int done = 0; done < rows; done += 1000) {
        writer.Batch(std::min(1000, rows - done), tag);
      }
    }
    sqlite3_close(db);
  }
  // (The writer's connection closed above; WAL content stays readable.)
  sqlite3* db = OpenRaw(path, true);
  sqlite3_stmt* get = nullptr;
  const std::string get_sql = absl::StrCat("SELECT ", sqlite::kTaskColumns,
                                           " FROM tasks WHERE id = ?1");
  Check(db, sqlite3_prepare_v2(db, get_sql.c_str(), -1, &get, nullptr),
        "prepare get");
  std::mt19937_64 rng(42);
  Histogram latency;
  int64_t reads = 0, misses = 0;
  auto read_one = [&] {
    const std::string& id = ids[rng() % ids.size()];
    sqlite3_bind_text(get, 1, id.data(), static_cast<int>(id.size()),
                      SQLITE_TRANSIENT);
    if (sqlite3_step(get) == SQLITE_ROW) {
      for (int c = 0; c < 15; ++c) {
        if (sqlite3_column_type(get, c) == SQLITE_TEXT) {
          (void)sqlite3_column_text(get, c);
        } else {
          (void)sqlite3_column_int64(get, c);
        }
      }
    } else {
      ++misses;
    }
    sqlite3_reset(get);
  };
  absl::Time warm_until = absl::Now() + absl::GetFlag(FLAGS_warmup);
  while (absl::Now() < warm_until) read_one();
  absl::Time begin = absl::Now();
  absl::Time end = begin + absl::GetFlag(FLAGS_duration);
  int64_t limit = absl::GetFlag(FLAGS_count);
  while (limit > 0 ? reads < limit : absl::Now() < end) {
    // Time 64 reads at a time: the clock costs as much as a read.
    auto start = Clock::now();
    for (int i = 0; i < 64; ++i) read_one();
    latency.Record(std::chrono::duration_cast<std::chrono::microseconds>(
                       Clock::now() - start)
                       .count());
    reads += 64;
  }
  double seconds = absl::ToDoubleSeconds(absl::Now() - begin);
  sqlite3_finalize(get);
  sqlite3_close(db);
  Report report;
  report.scenario = "sqlite-get";
  report.seconds = seconds;
  report.ops = reads;
  report.errors = misses;
  report.latency = &latency;
  report.op_unit = "read";
  report.latency_unit = "64 reads";
  report.AddString("latency_is", "per 64 reads");
  report.AddInt("rows", rows);
  Print(report);
  return 0;
}

}  // namespace
}  // namespace taskd

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "load generator for taskd, its peer etcd and the raw SQLite baseline; "
      "see bench/loadgen.cc");
  absl::ParseCommandLine(argc, argv);
  std::string scenario = absl::GetFlag(FLAGS_scenario);
  if (scenario == "sqlite-insert") return taskd::RunSqliteInsert();
  if (scenario == "sqlite-get") return taskd::RunSqliteGet();
  if (scenario == "create" || scenario == "get" || scenario == "list" ||
      scenario == "moves" || scenario == "mix" || scenario == "watch" ||
      scenario == "acquire" || scenario == "etcd-put" ||
      scenario == "etcd-range") {
    return taskd::RunGrpc(scenario);
  }
  if (scenario == "wake") return taskd::RunWake();
  if (scenario == "heartbeat") return taskd::RunHeartbeat();
  std::cerr << "taskd_loadgen: unknown --scenario=" << scenario << "\n";
  return 2;
}
