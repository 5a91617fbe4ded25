// taskd_soak: a bounded soak of the real taskd binary. Not a ctest test; run
// it through scripts/soak.
//
//   taskd_soak [--minutes=10] [--watchers=1000] [--writers=4] [--rate=200]
//              [--sync=full] [--taskd=PATH] [--db=PATH]
//
// Starts taskd on a free port, opens --watchers WatchTasks streams (a
// quarter unfiltered, the rest filtered on one of ten task types), then runs
// --writers threads that take tasks through their life cycle (create,
// assign, start, complete, delete: five changes each) at --rate changes per
// second in all, for --minutes. Every 10 s it prints taskd's RSS, the write
// rate and errors, and the watchers' lag, measured two ways:
//   - revisions: taskd's current revision minus each watcher's last response
//     revision (what it has "considered"), at the sample moment;
//   - time: for each CREATED/UPDATED event, its arrival time minus the
//     event's updatedAt (set by taskd just before the commit; same machine,
//     same clock).
// At the end it prints a summary, and exits 1 if any write failed, any
// stream ended or skipped a revision, or an unfiltered watcher missed a
// change.
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_callback.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/task_client.h"
#include "google/protobuf/util/time_util.h"
#include "tests/test_util.h"

ABSL_FLAG(double, minutes, 10, "How long to write.");
ABSL_FLAG(int, watchers, 1000, "WatchTasks streams kept open throughout.");
ABSL_FLAG(int, writers, 4, "Writer threads.");
ABSL_FLAG(double, rate, 200, "Changes per second, all writers together.");
ABSL_FLAG(std::string, sync, "full", "taskd --sync.");
ABSL_FLAG(std::string, taskd, "", "The taskd binary; default: the build's.");
ABSL_FLAG(std::string, db, "", "Database file; default: a temporary one.");
ABSL_FLAG(int, sample_seconds, 10, "Seconds between report lines.");

namespace taskd {
namespace {

using tasks::v1::Task;
using tasks::v1::TaskEvent;
using tasks::v1::WatchTasksRequest;
using tasks::v1::WatchTasksResponse;

constexpr int kTypes = 10;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Starts argv[0] with stderr (taskd's log) going to `log_path`.
pid_t StartTaskd(const std::vector<std::string>& argv,
                 const std::string& log_path) {
  pid_t pid = fork();
  if (pid == 0) {
    int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, STDIN_FILENO);
    dup2(devnull, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int64_t RssKib(pid_t pid) {
  FILE* f = fopen(absl::StrCat("/proc/", pid, "/status").c_str(), "r");
  if (f == nullptr) return 0;
  char line[256];
  long kb = 0;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
  }
  fclose(f);
  return kb;
}

// Lag samples of one report interval (milliseconds), thread-safe.
class LagSamples {
 public:
  void Add(double ms) {
    std::lock_guard<std::mutex> lock(mu_);
    samples_.push_back(ms);
  }
  // p50, p99, max of what was added since the last call; and the count.
  std::vector<double> TakePercentiles(size_t* count) {
    std::vector<double> s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      s.swap(samples_);
    }
    *count = s.size();
    if (s.empty()) return {0, 0, 0};
    std::sort(s.begin(), s.end());
    auto at = [&](double q) {
      return s[std::min(s.size() - 1, static_cast<size_t>(q * s.size()))];
    };
    return {at(0.5), at(0.99), s.back()};
  }

 private:
  std::mutex mu_;
  std::vector<double> samples_;
};

// One open stream, read on gRPC's callback API (no thread per stream).
class SoakWatcher final : public grpc::ClientReadReactor<WatchTasksResponse> {
 public:
  SoakWatcher(tasks::v1::TaskService::Stub* stub, const std::string& filter,
              LagSamples* lag)
      : unfiltered_(filter.empty()), lag_(lag) {
    WatchTasksRequest request;
    request.set_filter(filter);
    // Filtered watchers see few events; progress keeps their position fresh.
    request.mutable_progress_interval()->set_seconds(1);
    stub->async()->WatchTasks(&context_, &request, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    int64_t now_micros = absl::ToUnixMicros(absl::Now());
    for (const TaskEvent& e : response_.events()) {
      int64_t last = last_event_.load();
      if (e.revision() <= last) ++disorder_;
      if (unfiltered_ && last != 0 && e.revision() != last + 1) {
        gaps_ += e.revision() - last - 1;
      }
      last_event_ = e.revision();
      ++events_;
      if (e.type() != TaskEvent::DELETED) {
        int64_t updated =
            google::protobuf::util::TimeUtil::TimestampToMicroseconds(
                e.task().updated_at());
        lag_->Add((now_micros - updated) / 1000.0);
      }
    }
    if (response_.revision() > 0) revision_ = response_.revision();
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    status_ = status;
  }

  void Cancel() { context_.TryCancel(); }
  bool done() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  grpc::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  int64_t revision() const { return revision_.load(); }
  int64_t events() const { return events_.load(); }
  int64_t gaps() const { return gaps_.load(); }
  int64_t disorder() const { return disorder_.load(); }
  bool unfiltered() const { return unfiltered_; }

 private:
  grpc::ClientContext context_;
  WatchTasksResponse response_;
  const bool unfiltered_;
  LagSamples* const lag_;
  std::atomic<int64_t> revision_{0};
  std::atomic<int64_t> last_event_{0};
  std::atomic<int64_t> events_{0};
  std::atomic<int64_t> gaps_{0};
  std::atomic<int64_t> disorder_{0};
  std::mutex mu_;
  bool done_ = false;
  grpc::Status status_;
};

// taskd's current revision: the first response of a watch from now tells
// it.
int64_t ServerRevision(tasks::v1::TaskService::Stub* stub) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  auto reader = stub->WatchTasks(&context, WatchTasksRequest());
  WatchTasksResponse first;
  int64_t revision = reader->Read(&first) ? first.revision() : -1;
  context.TryCancel();
  reader->Finish();
  return revision;
}

struct WriterStats {
  std::atomic<int64_t> changes{0};
  std::atomic<int64_t> errors{0};
  std::mutex mu;
  std::map<std::string, int64_t> errors_by_code;

  void Acknowledged() { ++changes; }
  void Failed(const absl::Status& status) {
    ++errors;
    std::lock_guard<std::mutex> lock(mu);
    ++errors_by_code[absl::StatusCodeToString(status.code())];
  }
};

int Run() {
  const absl::Duration duration =
      absl::Seconds(absl::GetFlag(FLAGS_minutes) * 60);
  const int num_watchers = absl::GetFlag(FLAGS_watchers);
  const int num_writers = std::max(1, absl::GetFlag(FLAGS_writers));
  const double rate = absl::GetFlag(FLAGS_rate);
  const absl::Duration sample =
      absl::Seconds(absl::GetFlag(FLAGS_sample_seconds));

  testing::TempDir dir;
  std::string db = absl::GetFlag(FLAGS_db);
  if (db.empty()) db = dir.File("soak.db");
  std::string binary = absl::GetFlag(FLAGS_taskd);
  if (binary.empty()) binary = testing::TaskdPath();
  const std::string log_path = dir.File("taskd.log");
  pid_t pid = StartTaskd({binary, "--listen=127.0.0.1:0", "--http_listen=",
                          "--db=" + db, "--sync=" + absl::GetFlag(FLAGS_sync)},
                         log_path);
  int port = 0;
  for (absl::Time deadline = absl::Now() + absl::Seconds(30);
       port == 0 && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(20))) {
    std::string log = ReadFile(log_path);
    size_t at = log.find("taskd serving");
    if (at == std::string::npos) continue;
    std::string line = log.substr(at, log.find('\n', at) - at);
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      if (absl::ConsumePrefix(&field, "port=")) {
        (void)absl::SimpleAtoi(field, &port);
      }
    }
  }
  if (port == 0) {
    std::cerr << "taskd_soak: taskd did not start:\n" << ReadFile(log_path);
    kill(pid, SIGKILL);
    return 2;
  }
  const std::string address = absl::StrCat("127.0.0.1:", port);
  std::cout << absl::StrFormat(
                   "soak: taskd pid %d on %s (--sync=%s), %d watchers, %d "
                   "writers at %.0f changes/s for %s",
                   pid, address, absl::GetFlag(FLAGS_sync), num_watchers,
                   num_writers, rate, absl::FormatDuration(duration))
            << std::endl;

  // Watchers: ten connections, a quarter unfiltered.
  std::vector<std::unique_ptr<tasks::v1::TaskService::Stub>> stubs;
  for (int i = 0; i < 10; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 16 << 20);
    stubs.push_back(tasks::v1::TaskService::NewStub(grpc::CreateCustomChannel(
        address, grpc::InsecureChannelCredentials(), args)));
  }
  LagSamples lag;
  std::vector<std::unique_ptr<SoakWatcher>> watchers;
  for (int i = 0; i < num_watchers; ++i) {
    std::string filter =
        i % 4 == 0 ? "" : absl::StrCat("type = \"soak-", i % kTypes, "\"");
    watchers.push_back(std::make_unique<SoakWatcher>(
        stubs[i % stubs.size()].get(), filter, &lag));
  }
  absl::SleepFor(absl::Seconds(2));  // let every stream open

  // Writers: life cycles at the rate asked, spread evenly.
  WriterStats stats;
  std::atomic<bool> stop{false};
  auto channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  std::vector<std::thread> writers;
  for (int w = 0; w < num_writers; ++w) {
    writers.emplace_back([&, w] {
      TaskClient client(channel);
      const absl::Duration interval =
          absl::Seconds(num_writers / std::max(rate, 0.001));
      absl::Time next = absl::Now();
      auto pace = [&] {
        next += interval;
        absl::Time now = absl::Now();
        if (next > now) {
          absl::SleepFor(next - now);
        } else if (now - next > absl::Seconds(1)) {
          next = now;  // behind: do not burst to catch up
        }
      };
      auto record = [&](const absl::StatusOr<Task>& result) {
        if (result.ok()) {
          stats.Acknowledged();
        } else {
          stats.Failed(result.status());
        }
        return result.ok();
      };
      for (int64_t n = 0; !stop; ++n) {
        Task task;
        task.set_type(absl::StrCat("soak-", (n * num_writers + w) % kTypes));
        pace();
        absl::StatusOr<Task> created = client.Create(task);
        if (!record(created)) continue;
        const std::string& id = created->id();
        pace();
        absl::StatusOr<Task> assigned =
            client.Assign(id, absl::StrCat("agent-", w));
        if (!record(assigned)) continue;
        const std::string lease = assigned->lease_token();
        pace();
        if (!record(client.Start(id, lease))) continue;
        pace();
        if (!record(client.Complete(id, Task::ok, lease))) continue;
        pace();
        absl::Status deleted = client.Delete(id);
        if (deleted.ok()) {
          stats.Acknowledged();
        } else {
          stats.Failed(deleted);
        }
      }
    });
  }

  // Reports.
  std::cout << "    t   rss_MiB  revision  changes/s  write_errs  open  "
               "lag_rev_p50/p99/max  lag_ms_p50/p99/max (events)"
            << std::endl;
  const absl::Time start = absl::Now();
  std::vector<std::pair<double, double>> rss_series;  // minutes, MiB
  int64_t previous_changes = 0;
  absl::Time previous_at = start;
  double worst_lag_ms = 0;
  int64_t worst_lag_rev = 0;
  while (true) {
    absl::Time now = absl::Now();
    absl::Time due = previous_at + sample;
    bool last = due >= start + duration;
    absl::SleepFor(
        std::max(absl::ZeroDuration(), std::min(due, start + duration) - now));
    now = absl::Now();
    double rss = RssKib(pid) / 1024.0;
    int64_t head = ServerRevision(stubs[0].get());
    std::vector<int64_t> behind;
    int open = 0;
    for (auto& w : watchers) {
      if (!w->done()) ++open;
      behind.push_back(std::max<int64_t>(0, head - w->revision()));
    }
    std::sort(behind.begin(), behind.end());
    auto rev_at = [&](double q) {
      return behind.empty()
                 ? 0
                 : behind[std::min(behind.size() - 1,
                                   static_cast<size_t>(q * behind.size()))];
    };
    size_t lag_count = 0;
    std::vector<double> ms = lag.TakePercentiles(&lag_count);
    int64_t changes = stats.changes.load();
    double per_second =
        (changes - previous_changes) /
        std::max(1e-3, absl::ToDoubleSeconds(now - previous_at));
    previous_changes = changes;
    previous_at = now;
    double minutes = absl::ToDoubleMinutes(now - start);
    rss_series.push_back({minutes, rss});
    worst_lag_ms = std::max(worst_lag_ms, ms[2]);
    worst_lag_rev = std::max(worst_lag_rev, behind.empty() ? 0 : behind.back());
    std::cout << absl::StrFormat(
                     "%5.0fs %8.1f %9d %10.0f %11d %5d  %5d/%5d/%5d  "
                     "%6.1f/%6.1f/%7.1f (%d)",
                     absl::ToDoubleSeconds(now - start), rss, head, per_second,
                     stats.errors.load(), open, rev_at(0.5), rev_at(0.99),
                     behind.empty() ? 0 : behind.back(), ms[0], ms[1], ms[2],
                     lag_count)
              << std::endl;
    if (rss == 0) {
      std::cout << "soak: taskd is gone" << std::endl;
      break;
    }
    if (last) break;
  }
  stop = true;
  for (auto& t : writers) t.join();

  // Let the watchers drain to the last acknowledged revision.
  const int64_t final_revision = ServerRevision(stubs[0].get());
  absl::Time drain_deadline = absl::Now() + absl::Seconds(30);
  absl::Time drain_start = absl::Now();
  auto all_caught_up = [&] {
    for (auto& w : watchers) {
      if (!w->done() && w->revision() < final_revision) return false;
    }
    return true;
  };
  while (!all_caught_up() && absl::Now() < drain_deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  absl::Duration drain_took = absl::Now() - drain_start;
  int ended = 0;
  int64_t gaps = 0, disorder = 0, behind_at_end = 0, unfiltered_events = 0;
  int unfiltered = 0;
  for (auto& w : watchers) {
    if (w->done()) {
      ++ended;
      if (ended <= 5) {
        std::cout << "soak: a stream ended: " << w->status().error_code() << " "
                  << w->status().error_message() << std::endl;
      }
    }
    gaps += w->gaps();
    disorder += w->disorder();
    if (w->revision() < final_revision) ++behind_at_end;
    if (w->unfiltered()) {
      ++unfiltered;
      unfiltered_events += w->events();
    }
  }
  for (auto& w : watchers) w->Cancel();
  for (auto& w : watchers) {
    while (!w->done()) absl::SleepFor(absl::Milliseconds(1));
  }

  // RSS: first and last, and the slope over the second half.
  double first_rss = rss_series.front().second;
  double peak_rss = 0;
  for (const auto& [m, r] : rss_series) peak_rss = std::max(peak_rss, r);
  double slope = 0;
  {
    std::vector<std::pair<double, double>> half(
        rss_series.begin() + rss_series.size() / 2, rss_series.end());
    if (half.size() >= 2) {
      double mx = 0, my = 0;
      for (const auto& [x, y] : half) {
        mx += x;
        my += y;
      }
      mx /= half.size();
      my /= half.size();
      double num = 0, den = 0;
      for (const auto& [x, y] : half) {
        num += (x - mx) * (y - my);
        den += (x - mx) * (x - mx);
      }
      slope = den > 0 ? num / den : 0;
    }
  }
  std::cout << absl::StrFormat(
                   "soak: %d changes acknowledged (final revision %d), %d "
                   "write errors",
                   stats.changes.load(), final_revision, stats.errors.load())
            << std::endl;
  {
    std::lock_guard<std::mutex> lock(stats.mu);
    for (const auto& [code, n] : stats.errors_by_code) {
      std::cout << "soak:   " << code << ": " << n << std::endl;
    }
  }
  std::cout << absl::StrFormat(
                   "soak: taskd RSS first %.1f MiB, peak %.1f MiB, last %.1f "
                   "MiB; second-half slope %+.2f MiB/min",
                   first_rss, peak_rss, rss_series.back().second, slope)
            << std::endl;
  std::cout << absl::StrFormat(
                   "soak: watchers: %d ended early, %d gaps, %d out of order, "
                   "%d behind the last revision after %s; unfiltered "
                   "watchers got %.0f events each on average; worst lag "
                   "%.1f ms, %d revisions",
                   ended, gaps, disorder, behind_at_end,
                   absl::FormatDuration(
                       absl::Trunc(drain_took, absl::Milliseconds(1))),
                   unfiltered
                       ? static_cast<double>(unfiltered_events) / unfiltered
                       : 0.0,
                   worst_lag_ms, worst_lag_rev)
            << std::endl;

  kill(pid, SIGTERM);
  int status = 0;
  int exit = -1;
  for (absl::Time deadline = absl::Now() + absl::Seconds(30);
       absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(10))) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
  }
  if (exit == -1) kill(pid, SIGKILL);
  if (exit != 0) std::cout << ReadFile(log_path);
  std::cout << "soak: taskd exited " << exit << " after SIGTERM" << std::endl;
  bool failed = stats.errors.load() > 0 || ended > 0 || gaps > 0 ||
                disorder > 0 || behind_at_end > 0 || exit != 0;
  std::cout << (failed ? "soak: FAILED" : "soak: OK") << std::endl;
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace taskd

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return taskd::Run();
}
