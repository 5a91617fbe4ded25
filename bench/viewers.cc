// taskd_viewers: dashboards' streams against a running taskd (issue 13):
// Server-Sent Events and gRPC-Web over taskd's HTTP port, native gRPC
// WatchTasks beside them, under a paced write load, all in one run.
//
//   taskd_viewers --grpc=127.0.0.1:50051 --http=127.0.0.1:8080
//       --sse=1000 --grpcweb=1000 --native=1000 --rate=20     (one line)
//   taskd_viewers ... --sse_counts=1000 --counts_filter=distinct
//       --rate=200 --writes=lifecycle
//   taskd_viewers ... --sse=1000 --rate=0 --server_pid=PID   (idle: RSS)
//
// Viewers (each its own TCP connection for the HTTP kinds):
//   --sse        GET /v1/tasks:watch?filter=--watch_filter; counts the SSE
//                blocks with `event: change`.
//   --grpcweb    POST /tasks.v1.TaskService/WatchTasks, Content-Type
//                application/grpc-web+proto, body = a 5-byte frame header
//                and the serialized WatchTasksRequest; counts the events of
//                the data frames (WatchTasksResponse).
//   --native     native gRPC WatchTasks over --native_connections HTTP/2
//                connections (the callback API), as taskd_loadgen's
//                watchers.
//   --sse_counts GET /v1/tasks:counts?group_by=--counts_group_by&
//                min_interval=--counts_min_interval&filter=--counts_filter
//                where "{i}" in the filter becomes i % --types for viewer
//                i: 'type = "t{i}"' gives each viewer a question (a view)
//                of its own; no {i}, one question shared by all.
// The HTTP viewers are raw non-blocking sockets on one epoll thread
// (HTTP/1.1, chunked transfer decoding, SSE and gRPC-Web framing parsed
// here); the native ones run on gRPC's callback threads.
//
// Writes: --rate operations per second in all (0: none), from
// --writer_threads threads over native gRPC, each op at its turn
// (start + k/rate). --writes=create: CreateTask only; lifecycle: each
// thread's tasks go create, assign, start, complete (four ops, four
// changes, each moving a task between states). Tasks get type
// "t<n % --types>" and tenant n % 100.
//
// Delivery delay: receive time minus the event's task.updatedAt, which
// taskd stamps just before it queues the change for commit (same machine,
// same clock), so it includes the commit itself.
//
// Timeline: open every viewer (--open_per_tick per 10 ms), wait until each
// has its response headers (HTTP watch viewers), its first counts (count
// viewers) or its first response (native), take
// taskd's RSS, run the writers for --warmup, then measure for --duration:
// events, messages, delays, bytes, CPU of taskd (/proc/PID/stat, and per
// thread) and of this process; then taskd's RSS again, with every viewer
// still open. Output: a summary and one JSON line (also appended to
// --json_out).
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/channel.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/histogram.h"
#include "server/http/rpc_codec.h"
#include "tasks/v1/tasks.grpc.pb.h"

ABSL_FLAG(std::string, grpc, "127.0.0.1:50051", "taskd's gRPC address");
ABSL_FLAG(std::string, http, "127.0.0.1:8080",
          "taskd's HTTP address (IPv4 host:port)");
ABSL_FLAG(int, sse, 0, "SSE /v1/tasks:watch viewers");
ABSL_FLAG(int, grpcweb, 0, "gRPC-Web WatchTasks viewers");
ABSL_FLAG(int, native, 0, "native gRPC WatchTasks viewers");
ABSL_FLAG(int, sse_counts, 0, "SSE /v1/tasks:counts viewers");
ABSL_FLAG(std::string, watch_filter, "",
          "the watch viewers' filter (empty: every change)");
ABSL_FLAG(std::string, counts_filter, "",
          "the count viewers' filter; {i} becomes the viewer's index modulo "
          "--types (a question of its own each)");
ABSL_FLAG(std::string, counts_group_by, "state", "group_by of the counts");
ABSL_FLAG(std::string, counts_min_interval, "1s", "min_interval of the counts");
ABSL_FLAG(int, native_connections, 4,
          "HTTP/2 connections the native viewers are spread over");
ABSL_FLAG(double, rate, 0, "write operations per second (0: none)");
ABSL_FLAG(std::string, writes, "create", "create or lifecycle");
ABSL_FLAG(int, types, 1000, "task types t0..t<types-1>, round robin");
ABSL_FLAG(int, writer_threads, 8, "writer threads (one call each at a time)");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(3),
          "writes before measuring starts");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(15), "measured time");
ABSL_FLAG(int, open_per_tick, 100, "viewers opened per 10 ms");
ABSL_FLAG(absl::Duration, ready_timeout, absl::Seconds(120),
          "how long to wait for every viewer to be ready (HTTP headers; for "
          "count viewers their first counts; native: the first response)");
ABSL_FLAG(int, server_pid, 0, "taskd's pid: its CPU and RSS");
ABSL_FLAG(std::string, label, "", "name of the run in the JSON line");
ABSL_FLAG(std::string, json_out, "", "file to append the JSON line to");

namespace taskd {
namespace {

using tasks::v1::AssignTaskRequest;
using tasks::v1::CompleteTaskRequest;
using tasks::v1::CreateTaskRequest;
using tasks::v1::StartTaskRequest;
using tasks::v1::Task;
using tasks::v1::TaskEvent;
using tasks::v1::TaskService;
using tasks::v1::WatchTaskCountsResponse;
using tasks::v1::WatchTasksRequest;
using tasks::v1::WatchTasksResponse;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "taskd_viewers: %s\n", what.c_str());
  std::exit(1);
}

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

// ---- Measuring (as taskd_loadgen) -------------------------------------------

using taskd::bench::Histogram;

double OwnCpuSeconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
         usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

// utime + stime in seconds from a /proc/.../stat file; 0 if unreadable.
double StatCpuSeconds(const std::string& path, std::string* comm = nullptr) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  size_t open = text.find('(');
  size_t paren = text.rfind(')');
  if (open == std::string::npos || paren == std::string::npos) return 0;
  if (comm != nullptr) *comm = text.substr(open + 1, paren - open - 1);
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int64_t RssKib(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return 0;
}

// Busy (non-idle, non-iowait) seconds of each CPU and of all, from
// /proc/stat: with taskd's and our own CPU, what the rest of the machine
// used during the window (other people's work shows up in every figure).
struct MachineCpu {
  std::map<std::string, double> busy;  // "cpu", "cpu0", "cpu1", ...

  static MachineCpu Take() {
    MachineCpu m;
    std::ifstream in("/proc/stat");
    std::string line;
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    while (std::getline(in, line)) {
      if (line.rfind("cpu", 0) != 0) break;
      std::istringstream fields(line);
      std::string name;
      fields >> name;
      double v[8] = {0};
      for (double& x : v) fields >> x;
      // user nice system idle iowait irq softirq steal (steal: the
      // hypervisor's, not this machine's, left out)
      m.busy[name] = (v[0] + v[1] + v[2] + v[5] + v[6]) / tick;
    }
    return m;
  }
};

using ThreadTimes = std::map<int, std::pair<std::string, double>>;

ThreadTimes ThreadCpu(int pid) {
  ThreadTimes threads;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/task"), error)) {
    int tid = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &tid)) continue;
    std::string comm;
    double seconds = StatCpuSeconds(
        absl::StrCat("/proc/", pid, "/task/", tid, "/stat"), &comm);
    threads[tid] = {comm, seconds};
  }
  return threads;
}

// Busiest threads first, as a JSON object "comm/tid": fraction of `wall`.
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

// ---- What each kind of viewer received --------------------------------------

enum Kind { kSse = 0, kGrpcWeb, kNative, kSseCounts, kKinds };
constexpr const char* kKindNames[kKinds] = {"sse", "grpcweb", "native",
                                            "sse_counts"};

struct Tally {
  std::atomic<int> opened{0};
  std::atomic<int> ready{0};    // headers (HTTP) or first response (native)
  std::atomic<int> refused{0};  // a status other than 200, or a failed call
  std::atomic<int> closed{0};   // ended before the run did
  // During the measured window only:
  std::atomic<int64_t> events{0};    // task changes (watch kinds)
  std::atomic<int64_t> messages{0};  // SSE blocks / frames / responses
  std::atomic<int64_t> bytes{0};     // body bytes (HTTP kinds)
  Histogram delay;
  // From opening the connection to the first SSE event or gRPC-Web frame
  // (for count viewers: the first counts, after taskd's first count).
  Histogram first;
  // Per HTTP viewer, its longest time without a message in the window.
  Histogram gap;
  std::string first_error;  // guarded by error_mu
  absl::Mutex error_mu;

  void Error(const std::string& what) {
    absl::MutexLock lock(&error_mu);
    if (first_error.empty()) first_error = what;
  }
};

std::atomic<bool> g_recording{false};
std::atomic<int64_t> g_record_begin{0}, g_record_end{0};  // micros
std::atomic<bool> g_stopping{false};
Tally g_tally[kKinds];

void RecordTaskDelay(Kind kind, const google::protobuf::Timestamp& at,
                     int64_t now) {
  g_tally[kind].delay.Record(now -
                             (at.seconds() * 1'000'000 + at.nanos() / 1000));
}

// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// Microseconds since the epoch of "YYYY-MM-DDTHH:MM:SS[.f+]Z", -1 if not.
int64_t ParseRfc3339Micros(absl::string_view s) {
  auto num = [&](size_t pos, size_t len) -> int64_t {
    int64_t v = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (i >= s.size() || !absl::ascii_isdigit(s[i])) return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  if (s.size() < 20) return -1;
  const int64_t y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2),
                mi = num(14, 2), se = num(17, 2);
  if (y < 0 || mo < 1 || d < 1 || h < 0 || mi < 0 || se < 0) return -1;
  int64_t micros = 0;
  size_t pos = 19;
  if (s[pos] == '.') {
    int digits = 0;
    ++pos;
    while (pos < s.size() && absl::ascii_isdigit(s[pos])) {
      if (digits < 6) {
        micros = micros * 10 + (s[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    while (digits++ < 6) micros *= 10;
  }
  const int64_t days =
      DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return ((days * 24 + h) * 60 + mi) * 60 * 1'000'000 + se * 1'000'000 + micros;
}

// ---- HTTP viewers: one epoll thread
// -------------------------------------------

std::string UrlEncode(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&out, "%%%02X", c);
    }
  }
  return out;
}

struct Conn {
  int fd = -1;
  Kind kind = kSse;
  std::string out;
  size_t out_done = 0;
  bool connected = false;
  bool headers_done = false;
  bool ended = false;
  bool got_first = false;
  int64_t opened_at = 0;  // micros
  // The longest time without a message within the measured window.
  int64_t last_message = 0;
  int64_t max_gap = 0;
  // Raw bytes received and not yet consumed, and the chunked decoder.
  std::string in;
  int64_t chunk_left = -1;  // -1: a size line is next
  bool chunk_crlf = false;  // the CRLF after a chunk's data is next
  // Decoded body bytes not yet parsed (SSE blocks, gRPC-Web frames).
  std::string body;
};

class HttpViewers {
 public:
  explicit HttpViewers(const std::string& address) {
    std::pair<std::string, std::string> hp =
        absl::StrSplit(address, absl::MaxSplits(':', 1));
    int port = 0;
    if (!absl::SimpleAtoi(hp.second, &port)) Die("bad --http " + address);
    std::memset(&addr_, 0, sizeof(addr_));
    addr_.sin_family = AF_INET;
    addr_.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, hp.first.c_str(), &addr_.sin_addr) != 1) {
      Die("bad --http host " + hp.first);
    }
    host_ = address;
    epoll_ = epoll_create1(0);
    if (epoll_ < 0) Die("epoll_create1");
  }

  // Called before Start() only.
  void Add(Kind kind, std::string request) {
    auto conn = std::make_unique<Conn>();
    conn->kind = kind;
    conn->out = std::move(request);
    pending_.push_back(std::move(conn));
  }

  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }

  void Stop() {
    g_stopping.store(true);
    if (thread_.joinable()) thread_.join();
    for (auto& conn : conns_) {
      if (conn->fd >= 0) close(conn->fd);
      // The gap still open when the window ended counts too.
      const int64_t end = g_record_end.load();
      const int64_t last =
          conn->last_message > 0 ? conn->last_message : g_record_begin.load();
      if (end > 0) conn->max_gap = std::max(conn->max_gap, end - last);
      g_tally[conn->kind].gap.Record(conn->max_gap);
    }
    close(epoll_);
  }

  std::string SseRequest(const std::string& path_and_query) const {
    return absl::StrCat("GET ", path_and_query, " HTTP/1.1\r\nHost: ", host_,
                        "\r\nAccept: text/event-stream\r\n\r\n");
  }
  std::string GrpcWebRequest(const std::string& method,
                             const std::string& message) const {
    const std::string body = http::Frame(http::kFrameData, message);
    return absl::StrCat("POST /tasks.v1.TaskService/", method,
                        " HTTP/1.1\r\nHost: ", host_,
                        "\r\nContent-Type: application/grpc-web+proto"
                        "\r\nX-Grpc-Web: 1\r\nAccept: "
                        "application/grpc-web+proto\r\nContent-Length: ",
                        body.size(), "\r\n\r\n", body);
  }

 private:
  void Open(std::unique_ptr<Conn> conn) {
    conn->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (conn->fd < 0) Die(absl::StrCat("socket: ", std::strerror(errno)));
    int one = 1;
    setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    g_tally[conn->kind].opened.fetch_add(1);
    conn->opened_at = NowMicros();
    int rc =
        connect(conn->fd, reinterpret_cast<sockaddr*>(&addr_), sizeof(addr_));
    if (rc < 0 && errno != EINPROGRESS) {
      g_tally[conn->kind].Error(
          absl::StrCat("connect: ", std::strerror(errno)));
      g_tally[conn->kind].refused.fetch_add(1);
      close(conn->fd);
      conn->fd = -1;
      conns_.push_back(std::move(conn));
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = conn.get();
    epoll_ctl(epoll_, EPOLL_CTL_ADD, conn->fd, &ev);
    conns_.push_back(std::move(conn));
  }

  void Loop() {
    size_t next = 0;
    const int per_tick = std::max(1, absl::GetFlag(FLAGS_open_per_tick));
    std::vector<epoll_event> events(1024);
    std::vector<char> buffer(1 << 16);
    while (!g_stopping.load()) {
      for (int i = 0; i < per_tick && next < pending_.size(); ++i) {
        Open(std::move(pending_[next++]));
      }
      int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                         10);
      for (int i = 0; i < n; ++i) {
        Conn* conn = static_cast<Conn*>(events[i].data.ptr);
        if (conn->ended) continue;
        if (!conn->connected && (events[i].events & (EPOLLOUT | EPOLLERR))) {
          int error = 0;
          socklen_t len = sizeof(error);
          getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &error, &len);
          if (error != 0) {
            End(conn, absl::StrCat("connect: ", std::strerror(error)), true);
            continue;
          }
          conn->connected = true;
        }
        if (conn->connected && conn->out_done < conn->out.size()) {
          ssize_t w = send(conn->fd, conn->out.data() + conn->out_done,
                           conn->out.size() - conn->out_done, MSG_NOSIGNAL);
          if (w > 0) conn->out_done += static_cast<size_t>(w);
          if (w < 0 && errno != EAGAIN) {
            End(conn, absl::StrCat("send: ", std::strerror(errno)), true);
            continue;
          }
          if (conn->out_done == conn->out.size()) {
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLRDHUP;
            ev.data.ptr = conn;
            epoll_ctl(epoll_, EPOLL_CTL_MOD, conn->fd, &ev);
          }
        }
        if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
          Read(conn, buffer);
        }
      }
    }
  }

  void Read(Conn* conn, std::vector<char>& buffer) {
    while (!conn->ended) {
      ssize_t r = recv(conn->fd, buffer.data(), buffer.size(), 0);
      if (r > 0) {
        conn->in.append(buffer.data(), static_cast<size_t>(r));
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      // EOF or error: parse what came, then end.
      Parse(conn);
      if (!conn->ended) {
        End(conn, r == 0 ? "closed by taskd" : std::strerror(errno),
            !conn->headers_done);
      }
      return;
    }
    Parse(conn);
  }

  void End(Conn* conn, const std::string& why, bool refused) {
    conn->ended = true;
    Tally& tally = g_tally[conn->kind];
    if (!g_stopping.load()) {
      (refused ? tally.refused : tally.closed).fetch_add(1);
      tally.Error(why);
    }
    epoll_ctl(epoll_, EPOLL_CTL_DEL, conn->fd, nullptr);
    close(conn->fd);
    conn->fd = -1;
  }

  void Parse(Conn* conn) {
    size_t pos = 0;
    std::string& in = conn->in;
    if (!conn->headers_done) {
      const size_t end = in.find("\r\n\r\n");
      if (end == std::string::npos) return;
      const absl::string_view head(in.data(), end);
      const bool ok = absl::StartsWith(head, "HTTP/1.1 200");
      const bool chunked = absl::StrContains(absl::AsciiStrToLower(head),
                                             "transfer-encoding: chunked");
      conn->headers_done = true;
      if (!ok || !chunked) {
        std::string body = in.substr(end + 4, 300);
        End(conn,
            absl::StrCat(head.substr(0, head.find('\r')), " ",
                         absl::StrReplaceAll(body, {{"\n", " "}, {"\r", ""}})),
            true);
        return;
      }
      // A count viewer is ready at its first counts (see ParseSse).
      if (conn->kind != kSseCounts) g_tally[conn->kind].ready.fetch_add(1);
      pos = end + 4;
    }
    // Chunked transfer decoding into conn->body.
    while (pos < in.size()) {
      if (conn->chunk_crlf) {
        if (in.size() - pos < 2) break;
        pos += 2;
        conn->chunk_crlf = false;
        continue;
      }
      if (conn->chunk_left < 0) {
        const size_t eol = in.find("\r\n", pos);
        if (eol == std::string::npos) break;
        int64_t size = 0;
        for (size_t i = pos; i < eol; ++i) {
          const char c = in[i];
          if (c == ';') break;
          int digit = absl::ascii_isdigit(c)   ? c - '0'
                      : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                      : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                               : -1;
          if (digit < 0) {
            End(conn, "bad chunk size", false);
            return;
          }
          size = size * 16 + digit;
        }
        pos = eol + 2;
        if (size == 0) {
          ParseBody(conn);
          End(conn, "stream ended", false);
          return;
        }
        conn->chunk_left = size;
        continue;
      }
      const size_t take = std::min<size_t>(
          static_cast<size_t>(conn->chunk_left), in.size() - pos);
      conn->body.append(in, pos, take);
      if (g_recording.load(std::memory_order_relaxed)) {
        g_tally[conn->kind].bytes.fetch_add(static_cast<int64_t>(take),
                                            std::memory_order_relaxed);
      }
      pos += take;
      conn->chunk_left -= static_cast<int64_t>(take);
      if (conn->chunk_left == 0) {
        conn->chunk_left = -1;
        conn->chunk_crlf = true;
      }
    }
    in.erase(0, pos);
    ParseBody(conn);
  }

  void ParseBody(Conn* conn) {
    if (conn->kind == kGrpcWeb) {
      ParseFrames(conn);
    } else {
      ParseSse(conn);
    }
  }

  // A message (SSE event or data frame) at `now`, while recording.
  static void Gap(Conn* conn, int64_t now) {
    const int64_t last =
        conn->last_message > 0 ? conn->last_message : g_record_begin.load();
    conn->max_gap = std::max(conn->max_gap, now - last);
    conn->last_message = now;
  }

  void First(Conn* conn, int64_t now) {
    if (conn->got_first) return;
    conn->got_first = true;
    g_tally[conn->kind].first.Record(now - conn->opened_at);
    if (conn->kind == kSseCounts) g_tally[conn->kind].ready.fetch_add(1);
  }

  // SSE: blocks end with a blank line.
  void ParseSse(Conn* conn) {
    std::string& body = conn->body;
    size_t pos = 0;
    const bool recording = g_recording.load(std::memory_order_relaxed);
    const int64_t now = NowMicros();
    Tally& tally = g_tally[conn->kind];
    while (true) {
      const size_t end = body.find("\n\n", pos);
      if (end == std::string::npos) break;
      const absl::string_view block(body.data() + pos, end - pos);
      pos = end + 2;
      absl::string_view event, data;
      for (absl::string_view line : absl::StrSplit(block, '\n')) {
        if (absl::ConsumePrefix(&line, "event:")) {
          event = absl::StripLeadingAsciiWhitespace(line);
        } else if (absl::ConsumePrefix(&line, "data:")) {
          data = absl::StripLeadingAsciiWhitespace(line);
        }
      }
      if (event.empty()) continue;  // a comment or retry:
      First(conn, now);
      if (event == "failed") {
        tally.Error(absl::StrCat("event: failed ", data));
        continue;
      }
      if (!recording) continue;
      Gap(conn, now);
      tally.messages.fetch_add(1, std::memory_order_relaxed);
      if (event == "change") {
        tally.events.fetch_add(1, std::memory_order_relaxed);
        // The task's updatedAt (the event's first; no previous asked).
        const size_t at = data.find("\"updatedAt\":\"");
        if (at != absl::string_view::npos) {
          const int64_t stamped = ParseRfc3339Micros(data.substr(at + 13));
          if (stamped > 0) tally.delay.Record(now - stamped);
        }
      }
    }
    body.erase(0, pos);
  }

  // gRPC-Web: frames of a flag byte, a 4-byte length and the message.
  void ParseFrames(Conn* conn) {
    std::string& body = conn->body;
    size_t pos = 0;
    const bool recording = g_recording.load(std::memory_order_relaxed);
    const int64_t now = NowMicros();
    Tally& tally = g_tally[conn->kind];
    while (body.size() - pos >= 5) {
      const uint8_t flag = static_cast<uint8_t>(body[pos]);
      const uint32_t n =
          (static_cast<uint32_t>(static_cast<uint8_t>(body[pos + 1])) << 24) |
          (static_cast<uint32_t>(static_cast<uint8_t>(body[pos + 2])) << 16) |
          (static_cast<uint32_t>(static_cast<uint8_t>(body[pos + 3])) << 8) |
          static_cast<uint32_t>(static_cast<uint8_t>(body[pos + 4]));
      if (body.size() - pos - 5 < n) break;
      const char* payload = body.data() + pos + 5;
      pos += 5 + n;
      First(conn, now);
      if (flag & 0x80) {
        const std::string trailers(payload, n);
        if (!absl::StrContains(trailers, "grpc-status:0") &&
            !absl::StrContains(trailers, "grpc-status: 0")) {
          tally.Error(absl::StrReplaceAll(trailers, {{"\r\n", " "}}));
        }
        continue;
      }
      if (!recording) continue;
      Gap(conn, now);
      tally.messages.fetch_add(1, std::memory_order_relaxed);
      WatchTasksResponse response;
      if (!response.ParseFromArray(payload, static_cast<int>(n))) {
        tally.Error("unparsable WatchTasksResponse");
        continue;
      }
      tally.events.fetch_add(response.events_size(), std::memory_order_relaxed);
      for (const TaskEvent& event : response.events()) {
        RecordTaskDelay(conn->kind, event.task().updated_at(), now);
      }
    }
    body.erase(0, pos);
  }

  sockaddr_in addr_;
  std::string host_;
  int epoll_ = -1;
  std::vector<std::unique_ptr<Conn>> pending_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::thread thread_;
};

// ---- Native gRPC viewers
// ------------------------------------------------------

std::shared_ptr<grpc::Channel> NewChannel() {
  grpc::ChannelArguments args;
  // A separate TCP connection per channel.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 << 20);
  auto channel = grpc::CreateCustomChannel(
      absl::GetFlag(FLAGS_grpc), grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(
          absl::ToChronoTime(absl::Now() + absl::Seconds(10)))) {
    Die("cannot connect to " + absl::GetFlag(FLAGS_grpc));
  }
  return channel;
}

class NativeViewer final : public grpc::ClientReadReactor<WatchTasksResponse> {
 public:
  NativeViewer(TaskService::Stub* stub, const std::string& filter) {
    request_.set_filter(filter);
    g_tally[kNative].opened.fetch_add(1);
    opened_at_ = NowMicros();
    stub->async()->WatchTasks(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (!seen_first_) {
      seen_first_ = true;
      g_tally[kNative].first.Record(NowMicros() - opened_at_);
      g_tally[kNative].ready.fetch_add(1);
    }
    if (g_recording.load(std::memory_order_relaxed)) {
      const int64_t now = NowMicros();
      Tally& tally = g_tally[kNative];
      tally.messages.fetch_add(1, std::memory_order_relaxed);
      tally.events.fetch_add(response_.events_size(),
                             std::memory_order_relaxed);
      for (const TaskEvent& event : response_.events()) {
        RecordTaskDelay(kNative, event.task().updated_at(), now);
      }
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    if (!g_stopping.load()) {
      (seen_first_ ? g_tally[kNative].closed : g_tally[kNative].refused)
          .fetch_add(1);
      g_tally[kNative].Error(status.error_message());
    }
    absl::MutexLock lock(&mu_);
    done_ = true;
  }
  void Cancel() { context_.TryCancel(); }
  void WaitDone() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

 private:
  grpc::ClientContext context_;
  WatchTasksRequest request_;
  WatchTasksResponse response_;
  bool seen_first_ = false;
  int64_t opened_at_ = 0;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// ---- Writers
// --------------------------------------------------------------------

struct Writes {
  std::atomic<int64_t> next{0};  // the next op's turn
  std::atomic<int64_t> ops{0};   // completed during the window
  std::atomic<int64_t> errors{0};
  Histogram latency;
  std::string first_error;
  absl::Mutex mu;
};

void Writer(TaskService::Stub* stub, int thread, double rate, bool lifecycle,
            std::chrono::steady_clock::time_point begin, Writes* writes) {
  const int types = std::max(1, absl::GetFlag(FLAGS_types));
  int step = 0;  // lifecycle: 0 create, 1 assign, 2 start, 3 complete
  std::string id, lease;
  int64_t serial = thread;
  while (!g_stopping.load()) {
    const int64_t k = writes->next.fetch_add(1);
    const auto due =
        begin + std::chrono::microseconds(static_cast<int64_t>(k * 1e6 / rate));
    std::this_thread::sleep_until(due);
    if (g_stopping.load()) break;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    Task task;
    grpc::Status status;
    const absl::Time t0 = absl::Now();
    if (step == 0) {
      CreateTaskRequest request;
      request.mutable_task()->set_type(absl::StrCat("t", serial % types));
      request.mutable_task()->set_priority("normal");
      request.mutable_task()->set_tenant_id(absl::StrFormat(
          "3f2a9c1e-5b7d-4e8f-9a0b-%012d", static_cast<int>(serial % 100)));
      serial += absl::GetFlag(FLAGS_writer_threads);
      status = stub->CreateTask(&context, request, &task);
      id = task.id();
    } else if (step == 1) {
      AssignTaskRequest request;
      request.set_id(id);
      request.set_executor_id("agent-7");
      status = stub->AssignTask(&context, request, &task);
      lease = task.lease_token();
    } else if (step == 2) {
      StartTaskRequest request;
      request.set_id(id);
      request.set_lease_token(lease);
      status = stub->StartTask(&context, request, &task);
    } else {
      CompleteTaskRequest request;
      request.set_id(id);
      request.set_result_code(Task::ok);
      request.set_lease_token(lease);
      status = stub->CompleteTask(&context, request, &task);
    }
    const absl::Duration took = absl::Now() - t0;
    if (!status.ok()) {
      writes->errors.fetch_add(1);
      absl::MutexLock lock(&writes->mu);
      if (writes->first_error.empty()) {
        writes->first_error = status.error_message();
      }
      step = 0;  // start a new task
      continue;
    }
    if (g_recording.load(std::memory_order_relaxed)) {
      writes->ops.fetch_add(1);
      writes->latency.Record(absl::ToInt64Microseconds(took));
    }
    if (lifecycle) step = (step + 1) % 4;
  }
}

std::string JsonEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out;
}

int Run() {
  const int n[kKinds] = {absl::GetFlag(FLAGS_sse), absl::GetFlag(FLAGS_grpcweb),
                         absl::GetFlag(FLAGS_native),
                         absl::GetFlag(FLAGS_sse_counts)};
  const int server_pid = absl::GetFlag(FLAGS_server_pid);
  const double rate = absl::GetFlag(FLAGS_rate);
  const std::string writes_mode = absl::GetFlag(FLAGS_writes);
  if (writes_mode != "create" && writes_mode != "lifecycle") {
    Die("--writes must be create or lifecycle");
  }
  const std::string counts_filter = absl::GetFlag(FLAGS_counts_filter);
  const int64_t rss_before = server_pid ? RssKib(server_pid) : 0;

  // The HTTP viewers' requests.
  HttpViewers http(absl::GetFlag(FLAGS_http));
  const std::string watch_filter = absl::GetFlag(FLAGS_watch_filter);
  {
    std::string path = "/v1/tasks:watch";
    if (!watch_filter.empty()) {
      absl::StrAppend(&path, "?filter=", UrlEncode(watch_filter));
    }
    for (int i = 0; i < n[kSse]; ++i) http.Add(kSse, http.SseRequest(path));
    WatchTasksRequest request;
    request.set_filter(watch_filter);
    for (int i = 0; i < n[kGrpcWeb]; ++i) {
      http.Add(kGrpcWeb,
               http.GrpcWebRequest("WatchTasks", request.SerializeAsString()));
    }
    const int types = std::max(1, absl::GetFlag(FLAGS_types));
    for (int i = 0; i < n[kSseCounts]; ++i) {
      std::string counts = absl::StrCat(
          "/v1/tasks:counts?group_by=",
          UrlEncode(absl::GetFlag(FLAGS_counts_group_by)), "&min_interval=",
          UrlEncode(absl::GetFlag(FLAGS_counts_min_interval)));
      if (!counts_filter.empty()) {
        absl::StrAppend(
            &counts, "&filter=",
            UrlEncode(absl::StrReplaceAll(counts_filter,
                                          {{"{i}", absl::StrCat(i % types)}})));
      }
      http.Add(kSseCounts, http.SseRequest(counts));
    }
  }
  const absl::Time open_begin = absl::Now();
  http.Start();
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<TaskService::Stub>> stubs;
  std::vector<std::unique_ptr<NativeViewer>> natives;
  if (n[kNative] > 0) {
    for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_native_connections));
         ++i) {
      channels.push_back(NewChannel());
      stubs.push_back(TaskService::NewStub(channels.back()));
    }
    for (int i = 0; i < n[kNative]; ++i) {
      natives.push_back(std::make_unique<NativeViewer>(
          stubs[i % stubs.size()].get(), watch_filter));
    }
  }
  auto all_ready = [&] {
    for (int k = 0; k < kKinds; ++k) {
      if (g_tally[k].ready.load() + g_tally[k].refused.load() < n[k]) {
        return false;
      }
    }
    return true;
  };
  const absl::Time give_up = absl::Now() + absl::GetFlag(FLAGS_ready_timeout);
  while (!all_ready() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const double open_seconds = absl::ToDoubleSeconds(absl::Now() - open_begin);
  // Let taskd settle (a count view's first snapshot, buffers) before RSS.
  absl::SleepFor(absl::Seconds(1));
  const int64_t rss_open = server_pid ? RssKib(server_pid) : 0;
  for (int k = 0; k < kKinds; ++k) {
    if (n[k] > 0 && g_tally[k].ready.load() < n[k]) {
      std::cerr << "taskd_viewers: only " << g_tally[k].ready.load() << " of "
                << n[k] << " " << kKindNames[k] << " viewers started\n";
    }
  }

  // Writers.
  Writes writes;
  std::vector<std::thread> writers;
  std::shared_ptr<grpc::Channel> write_channel;
  std::unique_ptr<TaskService::Stub> write_stub;
  if (rate > 0) {
    write_channel = NewChannel();
    write_stub = TaskService::NewStub(write_channel);
    const auto begin = std::chrono::steady_clock::now();
    for (int t = 0; t < std::max(1, absl::GetFlag(FLAGS_writer_threads)); ++t) {
      writers.emplace_back(Writer, write_stub.get(), t, rate,
                           writes_mode == "lifecycle", begin, &writes);
    }
  }
  absl::SleepFor(absl::GetFlag(FLAGS_warmup));
  const MachineCpu machine0 = MachineCpu::Take();
  const double cpu0 = OwnCpuSeconds();
  const double server0 =
      server_pid ? StatCpuSeconds(absl::StrCat("/proc/", server_pid, "/stat"))
                 : 0;
  const ThreadTimes threads0 =
      server_pid ? ThreadCpu(server_pid) : ThreadTimes();
  const absl::Time begin = absl::Now();
  g_record_begin.store(absl::ToUnixMicros(begin));
  g_recording.store(true);
  absl::SleepFor(absl::GetFlag(FLAGS_duration));
  g_recording.store(false);
  g_record_end.store(NowMicros());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - begin);
  const double cpu1 = OwnCpuSeconds();
  const MachineCpu machine1 = MachineCpu::Take();
  const double server1 =
      server_pid ? StatCpuSeconds(absl::StrCat("/proc/", server_pid, "/stat"))
                 : 0;
  const ThreadTimes threads1 =
      server_pid ? ThreadCpu(server_pid) : ThreadTimes();
  const int64_t rss_end = server_pid ? RssKib(server_pid) : 0;
  // taskd gone before the window ended: its CPU figures are void.
  const bool server_gone = server_pid != 0 && kill(server_pid, 0) != 0;

  g_stopping.store(true);
  for (auto& writer : writers) writer.join();
  for (auto& viewer : natives) viewer->Cancel();
  for (auto& viewer : natives) viewer->WaitDone();
  http.Stop();

  // Report.
  const std::string label = absl::GetFlag(FLAGS_label);
  std::string json = absl::StrFormat(
      "{\"label\":\"%s\",\"seconds\":%.3f,\"rate\":%g,\"writes\":\"%s\","
      "\"write_ops\":%d,\"writes_per_s\":%.1f,\"write_errors\":%d,"
      "\"write_p50_us\":%d,\"write_p99_us\":%d,\"open_seconds\":%.2f,"
      "\"client_cpu\":%.3f",
      label, seconds, rate, writes_mode, writes.ops.load(),
      writes.ops.load() / seconds, writes.errors.load(),
      writes.latency.Quantile(0.5), writes.latency.Quantile(0.99), open_seconds,
      (cpu1 - cpu0) / seconds);
  // The machine's busy CPU during the window, all and per core (in cores),
  // and the part of it that was neither taskd nor this process.
  std::string busy_json = "{";
  for (const auto& [name, busy] : machine1.busy) {
    auto it = machine0.busy.find(name);
    if (it == machine0.busy.end()) continue;
    if (busy_json.size() > 1) busy_json += ",";
    absl::StrAppendFormat(&busy_json, "\"%s\":%.3f", name,
                          (busy - it->second) / seconds);
  }
  busy_json += "}";
  const double machine_busy =
      (machine1.busy.count("cpu") ? machine1.busy.at("cpu") : 0) -
      (machine0.busy.count("cpu") ? machine0.busy.at("cpu") : 0);
  const double others =
      (machine_busy - (cpu1 - cpu0) - (server1 - server0)) / seconds;
  absl::StrAppendFormat(&json, ",\"machine_busy\":%s,\"others_cpu\":%.3f",
                        busy_json, others);
  std::printf(
      "%s: %.1f s measured; writes %.1f/s (%lld errors, p50 %.1f ms, "
      "p99 %.1f ms); viewers opened in %.2f s; client CPU %.0f%%\n",
      label.empty() ? "taskd_viewers" : label.c_str(), seconds,
      writes.ops.load() / seconds, static_cast<long long>(writes.errors.load()),
      writes.latency.Quantile(0.5) / 1000.0,
      writes.latency.Quantile(0.99) / 1000.0, open_seconds,
      100 * (cpu1 - cpu0) / seconds);
  std::printf(
      "  the rest of the machine: %.0f%% of a core (busy per core: %s)\n",
      100 * others, busy_json.c_str());
  if (server_pid != 0) {
    absl::StrAppendFormat(
        &json,
        ",\"server_cpu\":%.3f,\"server_cpu_by_thread\":%s,"
        "\"server_rss_before_kib\":%d,\"server_rss_open_kib\":%d,"
        "\"server_rss_end_kib\":%d,\"server_gone\":%s",
        (server1 - server0) / seconds,
        ThreadCpuJson(threads0, threads1, seconds), rss_before, rss_open,
        rss_end, server_gone ? "true" : "false");
    if (server_gone) {
      std::printf(
          "  TASKD (pid %d) ENDED DURING THE RUN: its figures are void\n",
          server_pid);
    }
    std::printf(
        "  taskd: CPU %.0f%%; RSS %lld KiB before the viewers, "
        "%lld KiB with them open, %lld KiB at the end\n",
        100 * (server1 - server0) / seconds, static_cast<long long>(rss_before),
        static_cast<long long>(rss_open), static_cast<long long>(rss_end));
  }
  {
    absl::MutexLock lock(&writes.mu);
    if (!writes.first_error.empty()) {
      absl::StrAppend(&json, ",\"write_first_error\":\"",
                      JsonEscape(writes.first_error), "\"");
    }
  }
  for (int k = 0; k < kKinds; ++k) {
    if (n[k] == 0) continue;
    Tally& t = g_tally[k];
    const char* name = kKindNames[k];
    std::printf(
        "  %-10s %5d viewers (%d ready, %d refused, %d closed early): "
        "%.0f events/s, %.0f messages/s, %.0f KiB/s; delay p50 %.1f ms, "
        "p99 %.1f ms, p99.9 %.1f ms; first message after p50 %.1f ms, "
        "max %.1f ms; longest silence per viewer p50 %.0f ms, max %.0f "
        "ms\n",
        name, n[k], t.ready.load(), t.refused.load(), t.closed.load(),
        t.events.load() / seconds, t.messages.load() / seconds,
        t.bytes.load() / seconds / 1024, t.delay.Quantile(0.5) / 1000.0,
        t.delay.Quantile(0.99) / 1000.0, t.delay.Quantile(0.999) / 1000.0,
        t.first.Quantile(0.5) / 1000.0, t.first.Quantile(1.0) / 1000.0,
        t.gap.Quantile(0.5) / 1000.0, t.gap.Quantile(1.0) / 1000.0);
    absl::StrAppendFormat(
        &json,
        ",\"%s\":{\"viewers\":%d,\"ready\":%d,\"refused\":%d,\"closed\":%d,"
        "\"events\":%d,\"events_per_s\":%.1f,\"messages_per_s\":%.1f,"
        "\"bytes_per_s\":%.0f,\"delay_p50_us\":%d,\"delay_p90_us\":%d,"
        "\"delay_p99_us\":%d,\"delay_p999_us\":%d,\"first_p50_us\":%d,"
        "\"first_p99_us\":%d,\"first_max_us\":%d,\"gap_p50_us\":%d,"
        "\"gap_max_us\":%d",
        name, n[k], t.ready.load(), t.refused.load(), t.closed.load(),
        t.events.load(), t.events.load() / seconds, t.messages.load() / seconds,
        t.bytes.load() / seconds, t.delay.Quantile(0.5), t.delay.Quantile(0.9),
        t.delay.Quantile(0.99), t.delay.Quantile(0.999), t.first.Quantile(0.5),
        t.first.Quantile(0.99), t.first.Quantile(1.0), t.gap.Quantile(0.5),
        t.gap.Quantile(1.0));
    absl::MutexLock lock(&t.error_mu);
    if (!t.first_error.empty()) {
      std::printf("             first error: %s\n", t.first_error.c_str());
      absl::StrAppend(&json, ",\"first_error\":\"", JsonEscape(t.first_error),
                      "\"");
    }
    json += "}";
  }
  json += "}";
  std::printf("%s\n", json.c_str());
  const std::string out = absl::GetFlag(FLAGS_json_out);
  if (!out.empty()) {
    std::ofstream file(out, std::ios::app);
    file << json << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace taskd

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "dashboards' streams (SSE, gRPC-Web, native gRPC) against a running "
      "taskd; see bench/viewers.cc");
  absl::ParseCommandLine(argc, argv);
  return taskd::Run();
}
