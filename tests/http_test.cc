// Issue 13's HTTP face over real sockets: Connect (JSON and binary, unary
// and streams), gRPC-Web (binary and text), Server-Sent Events with resume,
// /metrics, the page; tokens and tenants as on the gRPC port; bad input of
// every kind answered clearly, with the server unharmed; streams that hold
// no thread. The client here is raw sockets, so that a test can send what
// no library would (a slow header, a broken envelope); the JavaScript
// clients are in tests/clients and tests/web.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "server/auth.h"
#include "server/http/rpc_codec.h"
#include "tests/test_certificates.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using ::testing::HasSubstr;

constexpr char kT1[] = "11111111-1111-4111-8111-111111111111";
constexpr char kT2[] = "22222222-2222-4222-8222-222222222222";

// One HTTP connection over a plain socket.
class Connection {
 public:
  explicit Connection(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address),
                         sizeof(address)) == 0;
  }
  ~Connection() { close(fd_); }

  bool connected() const { return connected_; }
  void Send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n =
          send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }
  // Reads what arrives within `timeout`, until `done(received)` holds or
  // the peer closes. Returns false if the peer closed.
  bool ReadUntil(const std::function<bool(const std::string&)>& done,
                 absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!done(received_)) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return true;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left))) <= 0) {
        return true;
      }
      char buffer[16384];
      ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) return false;
      received_.append(buffer, static_cast<size_t>(n));
    }
    return true;
  }
  // Whether the server closed the connection within `timeout`.
  bool ClosedWithin(absl::Duration timeout) {
    return !ReadUntil([](const std::string&) { return false; }, timeout);
  }
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string received_;
};

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // de-chunked
  bool complete = false;
};

// Parses what arrived: status line, headers, body (chunked or sized).
Response Parse(const std::string& raw) {
  Response response;
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return response;
  std::vector<std::string> lines = absl::StrSplit(raw.substr(0, end), "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() >= 2) {
    (void)absl::SimpleAtoi(status_line[1], &response.status);
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    response.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  std::string rest = raw.substr(end + 4);
  if (response.headers["transfer-encoding"] == "chunked") {
    size_t pos = 0;
    while (true) {
      const size_t line_end = rest.find("\r\n", pos);
      if (line_end == std::string::npos) break;
      size_t size = 0;
      if (!absl::SimpleHexAtoi(rest.substr(pos, line_end - pos), &size)) break;
      if (size == 0) {
        response.complete = true;
        break;
      }
      if (line_end + 2 + size + 2 > rest.size()) break;
      response.body += rest.substr(line_end + 2, size);
      pos = line_end + 2 + size + 2;
    }
  } else {
    size_t length = 0;
    (void)absl::SimpleAtoi(response.headers["content-length"], &length);
    response.body = rest.substr(0, length);
    response.complete = rest.size() >= length;
  }
  return response;
}

// The payloads of length-prefixed messages (gRPC-Web frames, Connect
// envelopes), with their flags.
std::vector<std::pair<uint8_t, std::string>> Frames(const std::string& body) {
  std::vector<std::pair<uint8_t, std::string>> frames;
  size_t pos = 0;
  while (pos + 5 <= body.size()) {
    const auto* p = reinterpret_cast<const unsigned char*>(body.data() + pos);
    const uint32_t size = (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) |
                          (uint32_t{p[3]} << 8) | p[4];
    if (pos + 5 + size > body.size()) break;
    frames.emplace_back(p[0], body.substr(pos + 5, size));
    pos += 5 + size;
  }
  return frames;
}

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {}
  void TearDown() override { taskd_.Stop(absl::Seconds(2)); }

  void Start(const std::string& tokens = "") {
    testing::InProcessTaskd::Options options;
    options.server.store.path = dir_.File("taskd.db");
    options.server.store.synchronous_full = false;
    options.server.http.listen_address = "127.0.0.1:0";
    options.server.http.request_timeout = absl::Seconds(1);
    options.server.http.sse_keepalive = absl::Milliseconds(200);
    options.server.http.max_body_bytes = 2 << 20;
    if (!tokens.empty()) {
      std::ofstream(dir_.File("tokens")) << tokens;
      options.server.auth_tokens_path = dir_.File("tokens");
      options.client.bearer_token = "admin-token";
    }
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
    http_port_ = taskd_.server->http_port();
    ASSERT_GT(http_port_, 0);
    // Restarts keep the HTTP port, as a browser expects.
    taskd_.options().server.http.listen_address =
        absl::StrCat("127.0.0.1:", http_port_);
  }

  static std::string Tokens() {
    auto line = [](const std::string& token, const std::string& tenant,
                   const std::string& role) {
      return absl::StrCat(Authorizer::HashToken(token), " ", tenant, " ", role,
                          "\n");
    };
    return line("admin-token", "*", "admin") +
           line("viewer-token", "*", "viewer") + line("t1-token", kT1, "admin");
  }

  // One request on a new connection; the whole response.
  Response Request(const std::string& method, const std::string& target,
                   const std::string& content_type, const std::string& body,
                   std::vector<std::string> headers = {}) {
    Connection connection(http_port_);
    EXPECT_TRUE(connection.connected());
    std::string request =
        absl::StrCat(method, " ", target, " HTTP/1.1\r\nHost: localhost\r\n");
    if (!content_type.empty()) {
      absl::StrAppend(&request, "Content-Type: ", content_type, "\r\n");
    }
    for (const std::string& header : headers) {
      absl::StrAppend(&request, header, "\r\n");
    }
    absl::StrAppend(&request, "Content-Length: ", body.size(),
                    "\r\nConnection: close\r\n\r\n", body);
    connection.Send(request);
    connection.ReadUntil([](const std::string&) { return false; });
    return Parse(connection.received());
  }

  Response PostJson(const std::string& method, const std::string& json,
                    std::vector<std::string> headers = {}) {
    return Request("POST", absl::StrCat("/tasks.v1.TaskService/", method),
                   "application/json", json, std::move(headers));
  }

  std::string CreateJson(const std::string& tenant = "") {
    Response created = PostJson(
        "CreateTask",
        absl::StrCat(R"({"task":{"type":"backup")",
                     tenant.empty()
                         ? ""
                         : absl::StrCat(R"(,"tenant_id":")", tenant, R"(")"),
                     "}}"),
        {"Authorization: Bearer admin-token"});
    EXPECT_EQ(created.status, 200) << created.body;
    return testing::JsonField(created.body, "id");
  }

  testing::TempDir dir_;
  testing::InProcessTaskd taskd_;
  int http_port_ = 0;
};

TEST_F(HttpTest, ConnectJsonAndBinaryUnaryCalls) {
  Start();
  const std::string id = CreateJson();
  ASSERT_FALSE(id.empty());
  Response got = PostJson("GetTask", absl::StrCat(R"({"id":")", id, R"("})"));
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.headers["content-type"], "application/json");
  EXPECT_EQ(testing::JsonField(got.body, "state"), "enqueued");

  tasks::v1::GetTaskRequest request;
  request.set_id(id);
  Response binary = Request("POST", "/tasks.v1.TaskService/GetTask",
                            "application/proto", request.SerializeAsString());
  EXPECT_EQ(binary.status, 200);
  Task task;
  ASSERT_TRUE(task.ParseFromString(binary.body));
  EXPECT_EQ(task.id(), id);

  Response counted = PostJson("CountTasks", R"({"groupBy":["state"]})");
  EXPECT_EQ(counted.status, 200);
  EXPECT_THAT(counted.body,
              HasSubstr(R"({"values":["enqueued"],"count":"1"})"));
}

TEST_F(HttpTest, ConnectErrorsCarryCodeMessageAndDetails) {
  Start();
  Response missing = PostJson("GetTask", R"({"id":"nope"})");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(testing::JsonField(missing.body, "code"), "not_found");
  EXPECT_THAT(missing.body, HasSubstr(R"("type":"google.rpc.ErrorInfo")"));
  EXPECT_THAT(missing.body, HasSubstr(R"("reason":"TASK_NOT_FOUND")"));

  Response filter = PostJson("ListTasks", R"({"filter":"stat = 1"})");
  EXPECT_EQ(filter.status, 400);
  EXPECT_EQ(testing::JsonField(filter.body, "code"), "invalid_argument");
  EXPECT_THAT(filter.body, HasSubstr("filter: column 1"));
  EXPECT_THAT(filter.body, HasSubstr("google.rpc.BadRequest"));

  // A misspelt field is an error, not silently dropped.
  Response unknown = PostJson("GetTask", R"({"idd":"x"})");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_THAT(unknown.body, HasSubstr("tasks.v1.GetTaskRequest"));
  Response broken = PostJson("GetTask", R"({"id":)");
  EXPECT_EQ(broken.status, 400);
  EXPECT_EQ(testing::JsonField(broken.body, "code"), "invalid_argument");

  Response no_method = PostJson("DropDatabase", "{}");
  EXPECT_EQ(no_method.status, 501);
  EXPECT_EQ(testing::JsonField(no_method.body, "code"), "unimplemented");
}

TEST_F(HttpTest, GrpcWebBinaryAndTextCarryTrailers) {
  Start();
  const std::string id = CreateJson();
  tasks::v1::GetTaskRequest request;
  request.set_id(id);
  const std::string framed =
      http::Frame(http::kFrameData, request.SerializeAsString());

  Response binary =
      Request("POST", "/tasks.v1.TaskService/GetTask",
              "application/grpc-web+proto", framed, {"X-Grpc-Web: 1"});
  EXPECT_EQ(binary.status, 200);
  EXPECT_EQ(binary.headers["content-type"], "application/grpc-web+proto");
  auto frames = Frames(binary.body);
  ASSERT_EQ(frames.size(), 2u);
  Task task;
  EXPECT_EQ(frames[0].first, http::kFrameData);
  ASSERT_TRUE(task.ParseFromString(frames[0].second));
  EXPECT_EQ(task.id(), id);
  EXPECT_EQ(frames[1].first, http::kGrpcWebTrailers);
  EXPECT_THAT(frames[1].second, HasSubstr("grpc-status:0"));

  Response text =
      Request("POST", "/tasks.v1.TaskService/GetTask",
              "application/grpc-web-text", absl::Base64Escape(framed));
  EXPECT_EQ(text.status, 200);
  std::string decoded;
  ASSERT_TRUE(absl::Base64Unescape(text.body, &decoded));
  EXPECT_EQ(Frames(decoded).size(), 2u);

  // An error: trailers only, with the status details a client decodes.
  tasks::v1::GetTaskRequest missing;
  missing.set_id("nope");
  Response error = Request(
      "POST", "/tasks.v1.TaskService/GetTask", "application/grpc-web+proto",
      http::Frame(http::kFrameData, missing.SerializeAsString()));
  frames = Frames(error.body);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].first, http::kGrpcWebTrailers);
  EXPECT_THAT(frames[0].second, HasSubstr("grpc-status:5"));
  const std::string key = "grpc-status-details-bin:";
  const size_t at = frames[0].second.find(key);
  ASSERT_NE(at, std::string::npos);
  std::string details_b64 = frames[0].second.substr(at + key.size());
  details_b64 = details_b64.substr(0, details_b64.find("\r\n"));
  std::string details;
  ASSERT_TRUE(absl::Base64Unescape(details_b64, &details));
  google::rpc::Status status;
  ASSERT_TRUE(status.ParseFromString(details));
  EXPECT_EQ(status.code(), 5);

  // A frame that lies about its length.
  std::string bad = framed;
  bad[4] = static_cast<char>(bad[4] + 7);
  Response broken = Request("POST", "/tasks.v1.TaskService/GetTask",
                            "application/grpc-web+proto", bad);
  frames = Frames(broken.body);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_THAT(frames[0].second, HasSubstr("grpc-status:3"));
  EXPECT_THAT(frames[0].second, HasSubstr("request body"));
}

TEST_F(HttpTest, ServerStreamsOverGrpcWebAndConnect) {
  Start();
  CreateJson();
  CreateJson();
  tasks::v1::WatchTasksRequest watch;
  watch.set_start_revision(1);
  {
    Connection connection(http_port_);
    const std::string body =
        http::Frame(http::kFrameData, watch.SerializeAsString());
    connection.Send(absl::StrCat(
        "POST /tasks.v1.TaskService/WatchTasks HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/grpc-web+proto\r\nContent-Length: ",
        body.size(), "\r\n\r\n", body));
    // Two events arrive (one response each, or one with both).
    int events = 0;
    connection.ReadUntil([&](const std::string& raw) {
      events = 0;
      for (auto& [flags, payload] : Frames(Parse(raw).body)) {
        tasks::v1::WatchTasksResponse response;
        if (flags == http::kFrameData && response.ParseFromString(payload)) {
          events += response.events_size();
        }
      }
      return events >= 2;
    });
    EXPECT_EQ(events, 2);
  }
  // Connect: a stream that fails ends with an end-stream message holding
  // the error.
  watch.set_start_revision(1000);
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(watch, &json).ok());
  Response ended =
      Request("POST", "/tasks.v1.TaskService/WatchTasks",
              "application/connect+json", http::Frame(http::kFrameData, json));
  EXPECT_EQ(ended.status, 200);
  auto frames = Frames(ended.body);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].first, http::kConnectEndStream);
  EXPECT_THAT(frames[0].second, HasSubstr(R"("code":"out_of_range")"));
  EXPECT_THAT(frames[0].second, HasSubstr("REVISION_AHEAD"));
  // A unary content type on a stream is refused, saying which to use.
  Response wrong = PostJson("WatchTasks", "{}");
  EXPECT_EQ(wrong.status, 415);
  EXPECT_THAT(wrong.body, HasSubstr("application/connect+json"));
}

// A call's deadline comes from grpc-timeout (gRPC-Web) or
// connect-timeout-ms (Connect), as a native client's would.
TEST_F(HttpTest, TimeoutHeadersBecomeTheCallsDeadline) {
  Start();
  const std::string wait = R"({"executorId":"e1","wait":"20s"})";
  const absl::Time start = absl::Now();
  Response connect = PostJson("AcquireTask", wait, {"Connect-Timeout-Ms: 300"});
  EXPECT_EQ(connect.status, 504) << connect.body;
  EXPECT_EQ(testing::JsonField(connect.body, "code"), "deadline_exceeded");

  tasks::v1::AcquireTaskRequest acquire;
  acquire.set_executor_id("e1");
  acquire.mutable_wait()->set_seconds(20);
  Response web = Request(
      "POST", "/tasks.v1.TaskService/AcquireTask", "application/grpc-web+proto",
      http::Frame(http::kFrameData, acquire.SerializeAsString()),
      {"grpc-timeout: 300m"});
  auto frames = Frames(web.body);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_THAT(frames[0].second, HasSubstr("grpc-status:4"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));

  Response bad =
      PostJson("GetTask", R"({"id":"x"})", {"Connect-Timeout-Ms: soon"});
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("connect-timeout-ms"));
}

// Reads SSE events from a raw stream: (event, id, data).
struct SseEvent {
  std::string event, id, data;
};
std::vector<SseEvent> SseEvents(const std::string& body) {
  std::vector<SseEvent> events;
  for (absl::string_view block : absl::StrSplit(body, "\n\n")) {
    SseEvent event;
    for (absl::string_view line : absl::StrSplit(block, '\n')) {
      if (absl::ConsumePrefix(&line, "event: "))
        event.event = std::string(line);
      if (absl::ConsumePrefix(&line, "id: ")) event.id = std::string(line);
      if (absl::ConsumePrefix(&line, "data: ")) event.data = std::string(line);
    }
    if (!event.event.empty()) events.push_back(event);
  }
  return events;
}

// Opens an SSE stream and reads until `count` events of `type` came.
std::vector<SseEvent> ReadSse(Connection& connection, const std::string& target,
                              const std::string& type, int count,
                              const std::string& extra_headers = "") {
  connection.Send(absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: x\r\n",
                               extra_headers, "\r\n"));
  std::vector<SseEvent> of_type;
  connection.ReadUntil([&](const std::string& raw) {
    of_type.clear();
    for (SseEvent& event : SseEvents(Parse(raw).body)) {
      if (event.event == type) of_type.push_back(event);
    }
    return static_cast<int>(of_type.size()) >= count;
  });
  return of_type;
}

TEST_F(HttpTest, SseResumesWithLastEventIdAcrossARestart) {
  Start();
  for (int i = 0; i < 3; ++i) CreateJson();
  {
    Connection connection(http_port_);
    std::vector<SseEvent> events =
        ReadSse(connection, "/v1/tasks:watch?start_revision=1", "change", 3);
    ASSERT_EQ(events.size(), 3u);
    EXPECT_EQ(events[0].id, "1");
    EXPECT_EQ(events[2].id, "3");
    EXPECT_EQ(Parse(connection.received()).headers["content-type"],
              "text/event-stream");
    EXPECT_THAT(connection.received(), HasSubstr("retry: "));
    // Keep-alive comments while idle.
    connection.ReadUntil([](const std::string& raw) {
      return absl::StrContains(raw, ": keep-alive");
    });
    EXPECT_THAT(connection.received(), HasSubstr(": keep-alive"));
  }
  // taskd restarts; meanwhile nothing is served. Then two more changes.
  ASSERT_TRUE(taskd_.Restart().ok());
  ASSERT_EQ(taskd_.server->http_port(), http_port_);
  CreateJson();
  CreateJson();
  Connection again(http_port_);
  // What a reconnecting EventSource sends: the last id it saw.
  std::vector<SseEvent> resumed =
      ReadSse(again, "/v1/tasks:watch?start_revision=1", "change", 2,
              "Last-Event-ID: 3\r\n");
  ASSERT_EQ(resumed.size(), 2u);
  EXPECT_EQ(resumed[0].id, "4");
  EXPECT_EQ(resumed[1].id, "5");
}

TEST_F(HttpTest, SseInitialStateThenSyncedThenChanges) {
  Start();
  CreateJson();
  Connection connection(http_port_);
  connection.Send(
      "GET /v1/tasks:watch?send_initial_state=true&include_previous=true "
      "HTTP/1.1\r\nHost: x\r\n\r\n");
  connection.ReadUntil([](const std::string& raw) {
    return absl::StrContains(raw, "event: synced");
  });
  std::vector<SseEvent> events = SseEvents(Parse(connection.received()).body);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "change");
  EXPECT_EQ(events[0].id, "");  // initial state: no resume point
  EXPECT_EQ(events[1].event, "synced");
  EXPECT_EQ(events[1].id, "1");
}

TEST_F(HttpTest, SseCountsAndFailures) {
  Start();
  CreateJson();
  Connection counts(http_port_);
  std::vector<SseEvent> first =
      ReadSse(counts, "/v1/tasks:counts?group_by=state&min_interval=100ms",
              "counts", 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].id, "1");
  EXPECT_THAT(first[0].data, HasSubstr(R"("values":["enqueued"],"count":"1")"));
  CreateJson();
  counts.ReadUntil([](const std::string& raw) {
    return absl::StrContains(raw, R"("count":"2")");
  });
  EXPECT_THAT(counts.received(), HasSubstr(R"("created":"1")"));

  // A compacted or future revision is a `failed` event, then the end.
  Connection ahead(http_port_);
  std::vector<SseEvent> failed =
      ReadSse(ahead, "/v1/tasks:watch?start_revision=999", "failed", 1);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_THAT(failed[0].data, HasSubstr(R"("code":"out_of_range")"));
  EXPECT_TRUE(ahead.ClosedWithin(absl::Seconds(5)));

  // Bad parameters are refused before any stream.
  Response bad = Request("GET", "/v1/tasks:watch?start_revision=abc", "", "");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("start_revision"));
  Response unknown = Request("GET", "/v1/tasks:counts?colour=red", "", "");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_THAT(unknown.body, HasSubstr("colour"));
  Response group = Request("GET", "/v1/tasks:counts?group_by=id", "", "");
  // The service's own check, sent as the stream's failure.
  EXPECT_THAT(group.body, HasSubstr("group_by[0]"));
}

TEST_F(HttpTest, MetricsAndThePageAreServed) {
  Start();
  const std::string id = CreateJson();
  Response metrics = Request("GET", "/metrics", "", "");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.body, HasSubstr(R"(taskd_tasks{state="enqueued"} 1)"));
  EXPECT_THAT(metrics.body,
              HasSubstr(R"(taskd_tasks_completed{result_code="ok"} 0)"));
  // The call made over HTTP went through the same call log and metrics.
  EXPECT_THAT(
      metrics.body,
      HasSubstr(
          R"(taskd_calls_total{code="OK",method="/tasks.v1.TaskService/CreateTask"} 1)"));
  Response page = Request("GET", "/", "", "");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.headers["content-type"], HasSubstr("text/html"));
  EXPECT_THAT(page.body, HasSubstr("<html"));
  Response head = Request("HEAD", "/", "", "");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.body.empty());
  Response missing = Request("GET", "/no/such/file.js", "", "");
  EXPECT_EQ(missing.status, 404);
}

// Proves that request_timeout (1 s here) bounds the client, not the call:
// an AcquireTask that waits 2 s for work is still answered, with the task
// enqueued meanwhile.
TEST_F(HttpTest, ACallLongerThanTheRequestTimeoutIsAnswered) {
  Start();
  std::thread later([this] {
    absl::SleepFor(absl::Milliseconds(1500));
    CreateJson();
  });
  const absl::Time start = absl::Now();
  Response acquired =
      PostJson("AcquireTask", R"({"executorId":"w1","wait":"3s"})");
  later.join();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(1400));
  EXPECT_EQ(acquired.status, 200) << acquired.body;
  EXPECT_EQ(testing::JsonField(acquired.body, "executor_id"), "w1")
      << acquired.body;
}

TEST_F(HttpTest, TokensAndTenantsAsOnTheGrpcPort) {
  Start(Tokens());
  const std::string mine = CreateJson(kT1);
  const std::string theirs = CreateJson(kT2);
  Response anonymous =
      PostJson("GetTask", absl::StrCat(R"({"id":")", mine, R"("})"));
  EXPECT_EQ(anonymous.status, 401) << anonymous.body;
  EXPECT_EQ(testing::JsonField(anonymous.body, "code"), "unauthenticated");
  Response wrong =
      PostJson("GetTask", absl::StrCat(R"({"id":")", mine, R"("})"),
               {"Authorization: Bearer not-a-token"});
  EXPECT_EQ(wrong.status, 401) << wrong.body;
  Response viewer = PostJson("CreateTask", R"({"task":{"type":"x"}})",
                             {"Authorization: Bearer viewer-token"});
  EXPECT_EQ(viewer.status, 403) << viewer.body;
  EXPECT_EQ(testing::JsonField(viewer.body, "code"), "permission_denied");
  Response own = PostJson("GetTask", absl::StrCat(R"({"id":")", mine, R"("})"),
                          {"Authorization: Bearer t1-token"});
  EXPECT_EQ(own.status, 200) << own.body;
  Response other =
      PostJson("GetTask", absl::StrCat(R"({"id":")", theirs, R"("})"),
               {"Authorization: Bearer t1-token"});
  EXPECT_EQ(other.status, 404) << other.body;  // as if it did not exist
  Response counted =
      PostJson("CountTasks", "{}", {"Authorization: Bearer t1-token"});
  EXPECT_THAT(counted.body, HasSubstr(R"("count":"1")"));

  // EventSource cannot set headers: access_token in the query.
  Connection sse(http_port_);
  std::vector<SseEvent> events =
      ReadSse(sse, "/v1/tasks:watch?start_revision=1&access_token=t1-token",
              "change", 1);
  ASSERT_EQ(events.size(), 1u) << sse.received();
  EXPECT_THAT(events[0].data, HasSubstr(mine));
  Connection refused(http_port_);
  std::vector<SseEvent> failed =
      ReadSse(refused, "/v1/tasks:watch?start_revision=1", "failed", 1);
  ASSERT_EQ(failed.size(), 1u) << refused.received();
  EXPECT_THAT(failed[0].data, HasSubstr("unauthenticated"));
  // /metrics and the page need no token (as the gRPC health check).
  EXPECT_EQ(Request("GET", "/metrics", "", "").status, 200);
}

TEST_F(HttpTest, BadInputIsRefusedAndTheServerCarriesOn) {
  Start();
  // Content types no protocol has.
  Response type =
      Request("POST", "/tasks.v1.TaskService/GetTask", "text/plain", "id=1");
  EXPECT_EQ(type.status, 415);
  EXPECT_THAT(type.body, HasSubstr("text/plain"));
  // GET on an RPC, POST on a page.
  EXPECT_EQ(Request("GET", "/tasks.v1.TaskService/GetTask", "", "").status,
            405);
  EXPECT_EQ(Request("POST", "/metrics", "application/json", "{}").status, 405);
  // A body over the limit: refused before it is read whole.
  Response huge = PostJson("CreateTask", std::string(3 << 20, 'x'));
  EXPECT_EQ(huge.status, 413);
  EXPECT_EQ(testing::JsonField(huge.body, "code"), "resource_exhausted");
  // Within the HTTP limit but over the service's 1 MiB message limit.
  Response big =
      PostJson("CreateTask", absl::StrCat(R"({"task":{"type":")",
                                          std::string(1200000, 'a'), R"("}})"));
  EXPECT_EQ(big.status, 429);
  // A header that never ends (slowloris): the connection is closed after
  // request_timeout (1 s here).
  {
    Connection slow(http_port_);
    slow.Send("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    EXPECT_TRUE(slow.ClosedWithin(absl::Seconds(5)));
  }
  // Not HTTP at all.
  {
    Connection garbage(http_port_);
    garbage.Send("\x16\x03\x01\x02\x00 hello\r\n\r\n");
    garbage.ReadUntil([](const std::string&) { return false; },
                      absl::Seconds(3));
    EXPECT_THAT(garbage.received(), HasSubstr("400"));
  }
  // A header over the limit.
  Response long_header =
      Request("GET", "/", "", "", {"X-Big: " + std::string(20000, 'h')});
  EXPECT_EQ(long_header.status, 431);
  // Broken Connect envelope.
  Response envelope =
      Request("POST", "/tasks.v1.TaskService/WatchTasks",
              "application/connect+json", std::string("\x00\x00", 2));
  auto frames = Frames(envelope.body);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_THAT(frames[0].second, HasSubstr("invalid_argument"));
  // Compressed messages are not supported, and say so.
  Response compressed =
      Request("POST", "/tasks.v1.TaskService/GetTask",
              "application/grpc-web+proto", http::Frame(1, "zzz"));
  EXPECT_THAT(compressed.body, HasSubstr("compressed"));
  // After all that, the server serves.
  EXPECT_FALSE(CreateJson().empty());
  EXPECT_TRUE(taskd_.client->List({}).ok());
}

// Streams hold sockets, not threads: 500 open SSE streams leave the
// process's thread count where it was (the HTTP threads are fixed).
TEST_F(HttpTest, OpenStreamsHoldNoThreads) {
  Start();
  auto threads = [] {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
      absl::string_view rest = line;
      if (absl::ConsumePrefix(&rest, "Threads:")) {
        int n = 0;
        (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &n);
        return n;
      }
    }
    return 0;
  };
  // Warm up: one stream of each kind starts whatever pools there are.
  std::vector<std::unique_ptr<Connection>> streams;
  for (const char* target : {"/v1/tasks:watch", "/v1/tasks:counts"}) {
    streams.push_back(std::make_unique<Connection>(http_port_));
    ReadSse(*streams.back(), target, "progress", 0);
  }
  absl::SleepFor(absl::Milliseconds(200));
  const int before = threads();
  for (int i = 0; i < 500; ++i) {
    streams.push_back(std::make_unique<Connection>(http_port_));
    streams.back()->Send(
        absl::StrCat("GET ", i % 2 ? "/v1/tasks:watch" : "/v1/tasks:counts",
                     " HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  for (int i = 0; i < 500; ++i) {
    if (taskd_.server->http_server()->open_streams() >= 502) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(taskd_.server->http_server()->open_streams(), 502u);
  const int after = threads();
  EXPECT_LE(after - before, 8)
      << before << " threads before, " << after << " with 500 more streams";
  // And the watch streams (odd places) all get a change.
  CreateJson();
  int delivered = 0;
  for (size_t i = 3; i < streams.size(); i += 2) {
    streams[i]->ReadUntil(
        [](const std::string& raw) {
          return absl::StrContains(raw, "event: change");
        },
        absl::Seconds(2));
    delivered += absl::StrContains(streams[i]->received(), "event: change");
  }
  EXPECT_EQ(delivered, 250);
}

// What README shows, with curl itself: Connect JSON calls, and an SSE
// stream resumed with Last-Event-ID.
TEST_F(HttpTest, CurlAsTheReadmeShowsIt) {
  Start();
  const std::string base = absl::StrCat("http://127.0.0.1:", http_port_);
  auto curl = [](std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/curl", "-sS"});
    std::string out, err;
    int rc = testing::RunCommand(args, "", &out, &err);
    EXPECT_EQ(rc == 0 || rc == 28, true) << rc << " " << err;  // 28: max-time
    return out;
  };
  const std::string created = curl({"-H", "Content-Type: application/json",
                                    "-d", R"({"task":{"type":"backup"}})",
                                    base + "/tasks.v1.TaskService/CreateTask"});
  const std::string id = testing::JsonField(created, "id");
  ASSERT_FALSE(id.empty()) << created;
  EXPECT_EQ(
      testing::JsonField(curl({"-H", "Content-Type: application/json", "-d",
                               absl::StrCat(R"({"id":")", id, R"("})"),
                               base + "/tasks.v1.TaskService/GetTask"}),
                         "state"),
      "enqueued");
  EXPECT_THAT(
      curl({"-H", "Content-Type: application/json", "-d",
            R"({"groupBy":["state"]})",
            base + "/tasks.v1.TaskService/CountTasks"}),
      HasSubstr(
          R"({"groups":[{"values":["enqueued"],"count":"1"}],"revision":"1"})"));
  curl({"-H", "Content-Type: application/json", "-d",
        R"({"task":{"type":"restore"}})",
        base + "/tasks.v1.TaskService/CreateTask"});
  // Resumed after revision 1: only the second task's creation.
  const std::string events =
      curl({"-N", "--max-time", "1", "-H", "Last-Event-ID: 1",
            base + "/v1/tasks:watch"});
  EXPECT_THAT(events, HasSubstr("id: 2\n"));
  EXPECT_THAT(events, HasSubstr(R"("type":"restore")"));
  EXPECT_THAT(events, ::testing::Not(HasSubstr("id: 1\n")));
  EXPECT_THAT(events, ::testing::Not(HasSubstr(R"("type":"backup")")));
}

// TLS: the HTTP listener serves with the gRPC port's certificate, checked
// with curl as a browser would.
TEST_F(HttpTest, TlsWithTheSameCertificate) {
  absl::StatusOr<testing::TestCertificates> pki =
      testing::TestCertificates::Make(dir_.path());
  ASSERT_TRUE(pki.ok()) << pki.status();
  testing::InProcessTaskd::Options options;
  options.server.store.path = dir_.File("taskd.db");
  options.server.http.listen_address = "127.0.0.1:0";
  const std::string cert = testing::ReadFile(pki->server_cert);
  const std::string key = testing::ReadFile(pki->server_key);
  options.server.http.tls_cert_pem = cert;
  options.server.http.tls_key_pem = key;
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({key, cert});
  options.server.credentials = grpc::SslServerCredentials(ssl);
  grpc::SslCredentialsOptions client;
  client.pem_root_certs = testing::ReadFile(pki->ca_cert);
  options.channel_credentials = grpc::SslCredentials(client);
  options.host = "localhost";
  ASSERT_TRUE(taskd_.Start(options).ok());
  const int port = taskd_.server->http_port();
  Task task;
  task.set_type("backup");
  ASSERT_TRUE(taskd_.client->Create(task).ok());
  std::string out, err;
  int rc = testing::RunCommand(
      {"/usr/bin/curl", "-sS", "--cacert", pki->ca_cert, "-H",
       "Content-Type: application/json", "-d", R"({"groupBy":["state"]})",
       absl::StrCat("https://localhost:", port,
                    "/tasks.v1.TaskService/CountTasks")},
      "", &out, &err);
  EXPECT_EQ(rc, 0) << err;
  EXPECT_THAT(out, HasSubstr(R"({"values":["enqueued"],"count":"1"})"));
  // Plaintext to the TLS port gets nothing served.
  rc =
      testing::RunCommand({"/usr/bin/curl", "-sS", "--max-time", "3",
                           absl::StrCat("http://localhost:", port, "/metrics")},
                          "", &out, &err);
  EXPECT_NE(rc, 0);
}

}  // namespace
}  // namespace taskd
