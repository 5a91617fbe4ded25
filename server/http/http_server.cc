#include "server/http/http_server.h"

#include <google/protobuf/util/json_util.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <deque>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "base/log.h"
#include "base/thread_name.h"
#include "server/http/rpc_bridge.h"
#include "server/http/rpc_codec.h"
#include "server/http/web_assets.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using Request = bhttp::request<bhttp::string_body>;

constexpr char kServicePrefix[] = "/tasks.v1.TaskService/";

// How a call's messages are framed on the wire.
enum class Wire {
  kGrpcWeb,             // application/grpc-web[+proto]
  kGrpcWebText,         // application/grpc-web-text[+proto]: base64
  kConnectJson,         // application/json (unary)
  kConnectProto,        // application/proto (unary)
  kConnectStreamJson,   // application/connect+json (streams)
  kConnectStreamProto,  // application/connect+proto (streams)
  kSseWatch,            // GET /v1/tasks:watch
  kSseCounts,           // GET /v1/tasks:counts
};

std::optional<Wire> WireOf(absl::string_view content_type) {
  content_type = content_type.substr(0, content_type.find(';'));
  const std::string type =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(content_type));
  if (type == "application/grpc-web" || type == "application/grpc-web+proto") {
    return Wire::kGrpcWeb;
  }
  if (type == "application/grpc-web-text" ||
      type == "application/grpc-web-text+proto") {
    return Wire::kGrpcWebText;
  }
  if (type == "application/json") return Wire::kConnectJson;
  if (type == "application/proto") return Wire::kConnectProto;
  if (type == "application/connect+json") return Wire::kConnectStreamJson;
  if (type == "application/connect+proto") return Wire::kConnectStreamProto;
  return std::nullopt;
}

bool IsGrpcWeb(Wire wire) {
  return wire == Wire::kGrpcWeb || wire == Wire::kGrpcWebText;
}
bool IsSse(Wire wire) {
  return wire == Wire::kSseWatch || wire == Wire::kSseCounts;
}

// %XX and '+' decoding of a query-string component.
std::string UrlDecode(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    int hi = 0, lo = 0;
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() + 0 &&
               absl::ascii_isxdigit(text[i + 1]) &&
               absl::ascii_isxdigit(text[i + 2])) {
      auto digit = [](char c) {
        return absl::ascii_isdigit(c) ? c - '0'
                                      : absl::ascii_tolower(c) - 'a' + 10;
      };
      hi = digit(text[i + 1]);
      lo = digit(text[i + 2]);
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

absl::string_view Sv(beast::string_view text) {
  return absl::string_view(text.data(), text.size());
}

grpc::Status InvalidArgument(std::string message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(message));
}

// The request of an SSE endpoint, from its query string (and the
// Last-Event-ID a reconnecting EventSource sends), serialized.
absl::StatusOr<std::string> SseRequest(Wire wire, absl::string_view query,
                                       absl::string_view last_event_id,
                                       std::string* access_token) {
  tasks::v1::WatchTasksRequest watch;
  tasks::v1::WatchTaskCountsRequest counts;
  auto boolean = [](absl::string_view name,
                    absl::string_view value) -> absl::StatusOr<bool> {
    if (value == "true" || value == "1" || value.empty()) return true;
    if (value == "false" || value == "0") return false;
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": \"", value, "\" is not a boolean (true or false)"));
  };
  auto duration = [](absl::string_view name, absl::string_view value,
                     google::protobuf::Duration* out) -> absl::Status {
    absl::Duration d;
    if (!absl::ParseDuration(value, &d) || d < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": \"", value, "\" is not a duration (e.g. 500ms, 5s, 1m)"));
    }
    out->set_seconds(absl::ToInt64Seconds(d));
    out->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(d - absl::Seconds(out->seconds()))));
    return absl::OkStatus();
  };
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    const std::string key = UrlDecode(kv.first);
    const std::string value = UrlDecode(kv.second);
    if (key == "access_token") {
      *access_token = value;
    } else if (key == "filter") {
      watch.set_filter(value);
      counts.set_filter(value);
    } else if (wire == Wire::kSseWatch && key == "start_revision") {
      int64_t revision = 0;
      if (!absl::SimpleAtoi(value, &revision)) {
        return absl::InvalidArgumentError(
            absl::StrCat("start_revision: \"", value, "\" is not a revision"));
      }
      watch.set_start_revision(revision);
    } else if (wire == Wire::kSseWatch && key == "include_previous") {
      absl::StatusOr<bool> b = boolean(key, value);
      if (!b.ok()) return b.status();
      watch.set_include_previous(*b);
    } else if (wire == Wire::kSseWatch && key == "send_initial_state") {
      absl::StatusOr<bool> b = boolean(key, value);
      if (!b.ok()) return b.status();
      watch.set_send_initial_state(*b);
    } else if (wire == Wire::kSseWatch && key == "progress_interval") {
      if (absl::Status s =
              duration(key, value, watch.mutable_progress_interval());
          !s.ok()) {
        return s;
      }
    } else if (wire == Wire::kSseCounts && key == "group_by") {
      for (absl::string_view field :
           absl::StrSplit(value, ',', absl::SkipEmpty())) {
        counts.add_group_by(std::string(field));
      }
    } else if (wire == Wire::kSseCounts && key == "min_interval") {
      if (absl::Status s = duration(key, value, counts.mutable_min_interval());
          !s.ok()) {
        return s;
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("query parameter \"", key, "\" is not known here"));
    }
  }
  if (wire == Wire::kSseCounts) return counts.SerializeAsString();
  if (!last_event_id.empty()) {
    // A reconnecting EventSource: continue after the last event it saw.
    int64_t last = 0;
    if (!absl::SimpleAtoi(last_event_id, &last) || last < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Last-Event-ID: \"", last_event_id, "\" is not a revision"));
    }
    watch.set_start_revision(last + 1);
    watch.set_send_initial_state(false);
  }
  return watch.SerializeAsString();
}

// What the server's sessions share.
struct Shared {
  explicit Shared(const HttpServerOptions& o,
                  std::shared_ptr<grpc::Channel> channel)
      : options(o), bridge(std::move(channel)) {}
  const HttpServerOptions options;
  RpcBridge bridge;
  std::atomic<size_t> connections{0};
  std::atomic<size_t> streams{0};
  // Calls whose completion has not yet been handed to a session: the
  // threads stop only once there are none (a completion posts to them).
  std::atomic<size_t> calls{0};
};

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  // Cancels the call in flight and closes the connection.
  virtual void Stop() = 0;
};

template <typename Stream>
class Session final : public SessionBase,
                      public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  template <typename... Args>
  Session(Shared* shared, Args&&... args)
      : shared_(shared),
        stream_(std::forward<Args>(args)...),
        keepalive_(stream_.get_executor()) {
    ++shared_->connections;
  }
  ~Session() override { --shared_->connections; }

  void Run() {
    auto self = this->shared_from_this();
    net::dispatch(stream_.get_executor(), [self] {
      if constexpr (kTls) {
        beast::get_lowest_layer(self->stream_)
            .expires_after(
                absl::ToChronoSeconds(self->shared_->options.request_timeout));
        self->stream_.async_handshake(ssl::stream_base::server,
                                      [self](beast::error_code ec) {
                                        if (ec) return self->Close();
                                        self->ReadRequest();
                                      });
      } else {
        self->ReadRequest();
      }
    });
  }

  void Stop() override {
    auto self = this->shared_from_this();
    net::post(stream_.get_executor(), [self] {
      if (self->call_ != nullptr) self->call_->Cancel();
      self->Close();
    });
  }

 private:
  // ---- Reading requests ----
  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(shared_->options.max_body_bytes);
    parser_->header_limit(
        static_cast<uint32_t>(shared_->options.max_header_bytes));
    beast::get_lowest_layer(stream_).expires_after(
        absl::ToChronoSeconds(shared_->options.request_timeout));
    auto self = this->shared_from_this();
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self](beast::error_code ec, size_t) { self->OnRequest(ec); });
  }

  void OnRequest(beast::error_code ec) {
    if (closed_) return;
    if (ec == bhttp::error::body_limit) {
      return ReplyError(
          413,
          grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                       absl::StrCat("request body: larger than ",
                                    shared_->options.max_body_bytes, " bytes")),
          false);
    }
    if (ec == bhttp::error::header_limit) {
      return ReplyError(431,
                        InvalidArgument(absl::StrCat(
                            "request header: larger than ",
                            shared_->options.max_header_bytes, " bytes")),
                        false);
    }
    if (ec) {
      // A request that is not HTTP gets an answer; a timeout or the
      // client's close just ends the connection.
      if (ec.category() ==
              bhttp::make_error_code(bhttp::error::end_of_stream).category() &&
          ec != bhttp::error::end_of_stream) {
        return ReplyError(
            400,
            InvalidArgument(absl::StrCat("bad HTTP request: ", ec.message())),
            false);
      }
      return Close();
    }
    request_ = parser_->release();
    // request_timeout bounds the client's reading and writing, never the
    // call: an AcquireTask that waits 60 s for work must still be answered.
    // Reply sets the timer again for the response's write.
    beast::get_lowest_layer(stream_).expires_never();
    Handle();
  }

  // ---- Routing ----
  void Handle() {
    const absl::string_view target(request_.target().data(),
                                   request_.target().size());
    const size_t question = target.find('?');
    const absl::string_view path = target.substr(0, question);
    const absl::string_view query =
        question == absl::string_view::npos ? "" : target.substr(question + 1);
    keep_alive_ = request_.keep_alive();
    const auto verb = request_.method();

    // An RPC's path is /<package.Service>/<Method>: two segments, the
    // first with dots.
    const std::vector<absl::string_view> segments =
        absl::StrSplit(path.substr(1), '/');
    if (segments.size() == 2 && absl::StrContains(segments[0], ".")) {
      if (verb != bhttp::verb::post) {
        return ReplyError(405, InvalidArgument("RPCs are POST requests"),
                          keep_alive_, "POST");
      }
      return HandleRpc(path);
    }
    if (verb != bhttp::verb::get && verb != bhttp::verb::head) {
      return ReplyError(405, InvalidArgument("only GET is served here"),
                        keep_alive_, "GET, HEAD");
    }
    if (path == "/v1/tasks:watch") return HandleSse(Wire::kSseWatch, query);
    if (path == "/v1/tasks:counts") return HandleSse(Wire::kSseCounts, query);
    if (path == "/metrics" && shared_->options.metrics) {
      return Reply(200, "text/plain; version=0.0.4; charset=utf-8",
                   shared_->options.metrics(), keep_alive_);
    }
    if (const WebAsset* asset =
            FindWebAsset(std::string_view(path.data(), path.size()))) {
      return Reply(200,
                   absl::string_view(asset->content_type.data(),
                                     asset->content_type.size()),
                   std::string(asset->body), keep_alive_,
                   {{"Cache-Control", "no-cache"}});
    }
    ReplyError(404,
               grpc::Status(grpc::StatusCode::NOT_FOUND,
                            absl::StrCat("no such path: ", path)),
               keep_alive_);
  }

  // ---- RPCs ----
  void HandleRpc(absl::string_view path) {
    const std::string content_type(request_[bhttp::field::content_type]);
    std::optional<Wire> wire = WireOf(content_type);
    if (!wire.has_value()) {
      return ReplyError(415,
                        InvalidArgument(absl::StrCat(
                            "Content-Type \"", content_type,
                            "\" is not served: use application/grpc-web+proto, "
                            "application/grpc-web-text, application/json, "
                            "application/proto, application/connect+json or "
                            "application/connect+proto")),
                        keep_alive_);
    }
    wire_ = *wire;
    method_ = FindTaskMethod(path);
    if (method_ == nullptr) {
      return FinishRpc(
          grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                       absl::StrCat("no method ", path, " (the methods are ",
                                    kServicePrefix, "<Method>)")),
          "");
    }
    const bool stream_wire =
        wire_ == Wire::kConnectStreamJson || wire_ == Wire::kConnectStreamProto;
    if (!IsGrpcWeb(wire_) && stream_wire != method_->server_streaming()) {
      return ReplyError(
          415,
          InvalidArgument(absl::StrCat(
              method_->name(), " is ",
              method_->server_streaming()
                  ? "a server stream: send application/connect+json or "
                    "application/connect+proto"
                  : "unary: send application/json or application/proto")),
          keep_alive_);
    }
    RpcCallOptions options;
    options.authorization = std::string(request_[bhttp::field::authorization]);
    absl::StatusOr<std::optional<int64_t>> timeout =
        IsGrpcWeb(wire_)
            ? GrpcTimeoutMillis(Sv(request_["grpc-timeout"]))
            : ConnectTimeoutMillis(Sv(request_["connect-timeout-ms"]));
    if (!timeout.ok()) {
      return FinishRpc(InvalidArgument(std::string(timeout.status().message())),
                       "");
    }
    if (timeout->has_value()) options.timeout = absl::Milliseconds(**timeout);
    absl::StatusOr<std::string> message = DecodeRequest(request_.body());
    if (!message.ok()) {
      return FinishRpc(
          grpc::Status(static_cast<grpc::StatusCode>(message.status().code()),
                       std::string(message.status().message())),
          "");
    }
    const std::string full_method = absl::StrCat(
        "/", method_->service()->full_name(), "/", method_->name());
    if (method_->server_streaming()) {
      return StartStream(full_method, *std::move(message), options);
    }
    auto self = this->shared_from_this();
    ++shared_->calls;
    shared_->bridge.Unary(full_method, *std::move(message), options,
                          [self](grpc::Status status, std::string response) {
                            net::post(
                                self->stream_.get_executor(),
                                [self, status = std::move(status),
                                 response = std::move(response)]() mutable {
                                  self->FinishRpc(status, response);
                                });
                            --self->shared_->calls;
                          });
  }

  // The request message's bytes from the HTTP body.
  absl::StatusOr<std::string> DecodeRequest(const std::string& body) {
    switch (wire_) {
      case Wire::kGrpcWebText: {
        absl::StatusOr<std::string> raw = DecodeGrpcWebText(body);
        if (!raw.ok()) return raw.status();
        return SingleFramePayload(*raw);
      }
      case Wire::kGrpcWeb:
      case Wire::kConnectStreamProto:
        return SingleFramePayload(body);
      case Wire::kConnectStreamJson: {
        absl::StatusOr<std::string> json = SingleFramePayload(body);
        if (!json.ok()) return json.status();
        return JsonToBinary(method_->input_type(), *json);
      }
      case Wire::kConnectJson:
        return JsonToBinary(method_->input_type(), body.empty() ? "{}" : body);
      default:
        return body;
    }
  }

  // A unary call's answer (or an RPC refused before it was made).
  void FinishRpc(const grpc::Status& status, const std::string& response) {
    if (closed_) return;
    if (IsGrpcWeb(wire_)) {
      std::string body;
      if (status.ok()) body = Frame(kFrameData, response);
      body += Frame(kGrpcWebTrailers, GrpcWebTrailers(status));
      const bool text = wire_ == Wire::kGrpcWebText;
      return Reply(200,
                   text ? "application/grpc-web-text+proto"
                        : "application/grpc-web+proto",
                   text ? absl::Base64Escape(body) : body, keep_alive_);
    }
    if (wire_ == Wire::kConnectStreamJson ||
        wire_ == Wire::kConnectStreamProto) {
      // A stream refused before it began: an empty stream that ends with
      // the error, as Connect clients read it.
      return Reply(
          200,
          wire_ == Wire::kConnectStreamJson ? "application/connect+json"
                                            : "application/connect+proto",
          Frame(kConnectEndStream, ConnectEndStreamJson(status)), keep_alive_);
    }
    if (!status.ok()) {
      return ReplyError(HttpStatusOf(status.error_code()), status, keep_alive_);
    }
    if (wire_ == Wire::kConnectJson) {
      absl::StatusOr<std::string> json =
          BinaryToJson(method_->output_type(), response);
      if (!json.ok()) {
        return ReplyError(500,
                          grpc::Status(grpc::StatusCode::INTERNAL,
                                       std::string(json.status().message())),
                          false);
      }
      return Reply(200, "application/json", *json, keep_alive_);
    }
    Reply(200, "application/proto", response, keep_alive_);
  }

  // ---- Streams (server streams, SSE) ----
  void HandleSse(Wire wire, absl::string_view query) {
    wire_ = wire;
    std::string token;
    absl::StatusOr<std::string> message =
        SseRequest(wire, query, Sv(request_["last-event-id"]), &token);
    if (!message.ok()) {
      return ReplyError(
          400, InvalidArgument(std::string(message.status().message())),
          keep_alive_);
    }
    RpcCallOptions options;
    options.authorization = std::string(request_[bhttp::field::authorization]);
    if (options.authorization.empty() && !token.empty()) {
      options.authorization = absl::StrCat("Bearer ", token);
    }
    if (wire == Wire::kSseWatch) {
      tasks::v1::WatchTasksRequest watch;
      watch.ParseFromString(*message);
      synced_ = !watch.send_initial_state();
    }
    method_ = FindTaskMethod(wire == Wire::kSseWatch
                                 ? "/tasks.v1.TaskService/WatchTasks"
                                 : "/tasks.v1.TaskService/WatchTaskCounts");
    StartStream(absl::StrCat("/", method_->service()->full_name(), "/",
                             method_->name()),
                *std::move(message), options);
  }

  void StartStream(const std::string& method, std::string message,
                   const RpcCallOptions& options) {
    streaming_ = true;
    ++shared_->streams;
    beast::get_lowest_layer(stream_).expires_never();
    std::string content_type;
    switch (wire_) {
      case Wire::kGrpcWeb:
        content_type = "application/grpc-web+proto";
        break;
      case Wire::kGrpcWebText:
        content_type = "application/grpc-web-text+proto";
        break;
      case Wire::kConnectStreamJson:
        content_type = "application/connect+json";
        break;
      case Wire::kConnectStreamProto:
        content_type = "application/connect+proto";
        break;
      default:
        content_type = "text/event-stream";
    }
    Send(absl::StrCat("HTTP/1.1 200 OK\r\nContent-Type: ", content_type,
                      "\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no"
                      "\r\nTransfer-Encoding: chunked\r\nConnection: close"
                      "\r\n\r\n"));
    if (IsSse(wire_)) {
      // Reconnect quickly after taskd restarts.
      Send(Chunk("retry: 1000\n\n"));
      ScheduleKeepalive();
    }
    auto self = this->shared_from_this();
    ++shared_->calls;
    // The call's callbacks hold the session weakly: the session holds the
    // call, and a strong reference back would keep both alive for ever if
    // the call outlived the listener (the probe read below keeps the
    // session alive while the stream is open).
    std::weak_ptr<Session> weak = self;
    call_ = shared_->bridge.ServerStream(
        method, std::move(message), options,
        [weak](std::string response) {
          if (auto self = weak.lock()) {
            net::post(self->stream_.get_executor(),
                      [self, response = std::move(response)] {
                        self->OnStreamMessage(response);
                      });
          }
        },
        [weak](grpc::Status status) {
          if (auto self = weak.lock()) {
            net::post(self->stream_.get_executor(),
                      [self, status = std::move(status)] {
                        self->OnStreamDone(status);
                      });
            --self->shared_->calls;
          }
        });
    // The client sends nothing more; a read that completes means it closed
    // the connection (or broke the protocol): either way the call ends.
    stream_.async_read_some(net::buffer(probe_),
                            [self](beast::error_code, size_t) {
                              if (self->call_ != nullptr) self->call_->Cancel();
                            });
  }

  void OnStreamMessage(const std::string& response) {
    if (closed_) return;
    std::string out = FormatStreamMessage(response);
    if (out.empty()) {
      call_->Next();
      return;
    }
    Send(Chunk(out), [this] {
      if (call_ != nullptr) call_->Next();
    });
  }

  std::string FormatStreamMessage(const std::string& response) {
    switch (wire_) {
      case Wire::kGrpcWeb:
        return Frame(kFrameData, response);
      case Wire::kGrpcWebText:
        return absl::Base64Escape(Frame(kFrameData, response));
      case Wire::kConnectStreamProto:
        return Frame(kFrameData, response);
      case Wire::kConnectStreamJson: {
        absl::StatusOr<std::string> json =
            BinaryToJson(method_->output_type(), response);
        return Frame(kFrameData, json.ok() ? *json : "{}");
      }
      case Wire::kSseWatch:
        return FormatWatch(response);
      case Wire::kSseCounts: {
        tasks::v1::WatchTaskCountsResponse counts;
        std::string json;
        if (!counts.ParseFromString(response) ||
            !google::protobuf::util::MessageToJsonString(counts, &json).ok()) {
          return "";
        }
        return SseEvent("counts", counts.revision(), json);
      }
      default:
        return "";
    }
  }

  // One SSE event per change, `id:` its revision, so that EventSource
  // resumes after the last one it saw. Initial-state events carry no id:
  // their revisions are not in order, and a drop before `synced` must
  // start the initial state over.
  std::string FormatWatch(const std::string& bytes) {
    tasks::v1::WatchTasksResponse response;
    if (!response.ParseFromString(bytes)) return "";
    std::string out;
    std::string json;
    for (const tasks::v1::TaskEvent& event : response.events()) {
      json.clear();
      (void)google::protobuf::util::MessageToJsonString(event, &json);
      out += SseEvent(
          "change",
          synced_ ? std::optional<int64_t>(event.revision()) : std::nullopt,
          json);
    }
    const std::string position =
        absl::StrCat("{\"revision\":\"", response.revision(), "\"}");
    if (response.initial_state_complete()) {
      synced_ = true;
      out += SseEvent("synced", response.revision(), position);
    } else if (response.progress()) {
      out += SseEvent("progress", response.revision(), position);
    }
    return out;
  }

  void OnStreamDone(const grpc::Status& status) {
    stream_done_ = true;
    // The call holds callbacks that hold this session: let it go.
    call_.reset();
    keepalive_.cancel();
    --shared_->streams;
    if (closed_) return;
    std::string last;
    switch (wire_) {
      case Wire::kGrpcWeb:
        last = Frame(kGrpcWebTrailers, GrpcWebTrailers(status));
        break;
      case Wire::kGrpcWebText:
        last = absl::Base64Escape(
            Frame(kGrpcWebTrailers, GrpcWebTrailers(status)));
        break;
      case Wire::kConnectStreamJson:
      case Wire::kConnectStreamProto:
        last = Frame(kConnectEndStream, ConnectEndStreamJson(status));
        break;
      default:
        // UNAVAILABLE (taskd shutting down) and CANCELLED end quietly:
        // EventSource reconnects and resumes. Anything else will not get
        // better by retrying: say so, and the page stops.
        if (!status.ok() &&
            status.error_code() != grpc::StatusCode::UNAVAILABLE &&
            status.error_code() != grpc::StatusCode::CANCELLED) {
          last = SseEvent("failed", std::nullopt, ConnectErrorJson(status));
        }
    }
    if (!last.empty()) Send(Chunk(last));
    Send("0\r\n\r\n", [this] { Close(); });
  }

  void ScheduleKeepalive() {
    keepalive_.expires_after(
        absl::ToChronoMilliseconds(shared_->options.sse_keepalive));
    auto self = this->shared_from_this();
    keepalive_.async_wait([self](beast::error_code ec) {
      if (ec || self->stream_done_ || self->closed_) return;
      // Only into an idle connection: a busy one shows it is alive.
      if (!self->writing_) self->Send(Chunk(SseComment("keep-alive")));
      self->ScheduleKeepalive();
    });
  }

  static std::string Chunk(absl::string_view data) {
    return absl::StrCat(absl::Hex(data.size()), "\r\n", data, "\r\n");
  }

  // ---- Writing ----
  void Reply(unsigned status, absl::string_view content_type, std::string body,
             bool keep_alive,
             std::vector<std::pair<std::string, std::string>> headers = {}) {
    bhttp::response<bhttp::string_body> response(
        static_cast<bhttp::status>(status), request_.version());
    response.set(bhttp::field::content_type,
                 beast::string_view(content_type.data(), content_type.size()));
    response.set(bhttp::field::server, "taskd");
    for (const auto& [name, value] : headers) response.set(name, value);
    response.keep_alive(keep_alive);
    const size_t size = body.size();
    if (request_.method() != bhttp::verb::head) {
      response.body() = std::move(body);
    }
    response.prepare_payload();
    if (request_.method() == bhttp::verb::head) response.content_length(size);
    std::ostringstream out;
    out << response;
    beast::get_lowest_layer(stream_).expires_after(
        absl::ToChronoSeconds(shared_->options.request_timeout));
    Send(out.str(), [this, keep_alive] {
      if (keep_alive) {
        ReadRequest();
      } else {
        Close();
      }
    });
  }

  // An error in the Connect form (a JSON body), which curl users and
  // browsers read too.
  void ReplyError(unsigned http_status, const grpc::Status& status,
                  bool keep_alive, std::string allow = "") {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!allow.empty()) headers.emplace_back("Allow", std::move(allow));
    Reply(http_status, "application/json", ConnectErrorJson(status), keep_alive,
          std::move(headers));
  }

  // `then` runs once `data` is written, from the write's completion (which
  // holds the session): it captures `this`, never a shared_ptr, or a write
  // that never completes (the listener stopping) would keep the session
  // alive through its own queue.
  void Send(std::string data, std::function<void()> then = nullptr) {
    out_.push_back({std::move(data), std::move(then)});
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    writing_ = true;
    auto self = this->shared_from_this();
    net::async_write(
        stream_, net::buffer(out_.front().data),
        [self](beast::error_code ec, size_t) { self->OnWritten(ec); });
  }

  void OnWritten(beast::error_code ec) {
    std::function<void()> then = std::move(out_.front().then);
    out_.pop_front();
    writing_ = false;
    if (ec) {
      if (call_ != nullptr) call_->Cancel();
      return Close();
    }
    if (then) then();
    if (!writing_ && !out_.empty() && !closed_) WriteNext();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    keepalive_.cancel();
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(
        tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).close();
  }

  struct Out {
    std::string data;
    std::function<void()> then;
  };

  Shared* const shared_;
  Stream stream_;
  net::steady_timer keepalive_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Request request_;
  bool keep_alive_ = false;
  Wire wire_ = Wire::kConnectJson;
  const google::protobuf::MethodDescriptor* method_ = nullptr;
  std::shared_ptr<RpcStream> call_;
  bool streaming_ = false;
  bool stream_done_ = false;
  bool synced_ = true;
  std::deque<Out> out_;
  bool writing_ = false;
  bool closed_ = false;
  char probe_[1];
};

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(const HttpServerOptions& options,
             std::shared_ptr<grpc::Channel> channel)
      : shared_(options, std::move(channel)),
        acceptor_(net::make_strand(io_)) {}

  ~ServerImpl() override { Shutdown(); }

  absl::Status Init() {
    const HttpServerOptions& options = shared_.options;
    const size_t colon = options.listen_address.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "http address \"", options.listen_address, "\" is not host:port"));
    }
    std::string host = options.listen_address.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    const std::string port_text = options.listen_address.substr(colon + 1);
    beast::error_code ec;
    tcp::resolver resolver(io_);
    auto endpoints = resolver.resolve(host, port_text, ec);
    if (ec || endpoints.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("http address \"", options.listen_address,
                       "\": cannot resolve: ", ec.message()));
    }
    const tcp::endpoint endpoint = endpoints.begin()->endpoint();
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on ", options.listen_address, ": ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    if (!options.tls_cert_pem.empty()) {
      tls_.emplace(ssl::context::tls_server);
      tls_->set_options(ssl::context::default_workarounds |
                        ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                        ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      tls_->use_certificate_chain(
          net::buffer(options.tls_cert_pem.data(), options.tls_cert_pem.size()),
          ec);
      if (!ec) {
        tls_->use_private_key(
            net::buffer(options.tls_key_pem.data(), options.tls_key_pem.size()),
            ssl::context::pem, ec);
      }
      if (!ec && !options.tls_client_ca_pem.empty()) {
        tls_->add_certificate_authority(
            net::buffer(options.tls_client_ca_pem.data(),
                        options.tls_client_ca_pem.size()),
            ec);
        tls_->set_verify_mode(
            ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
      }
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("http TLS: ", ec.message()));
      }
    }
    Accept();
    for (int i = 0; i < std::max(1, options.threads); ++i) {
      threads_.emplace_back([this] {
        SetThreadName("taskd-http");
        io_.run();
      });
    }
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  size_t open_connections() const override {
    return shared_.connections.load();
  }
  size_t open_streams() const override { return shared_.streams.load(); }

  void Shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    net::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
    });
    std::vector<std::shared_ptr<SessionBase>> sessions;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [key, weak] : sessions_) {
        if (auto session = weak.lock()) sessions.push_back(session);
      }
    }
    for (auto& session : sessions) session->Stop();
    sessions.clear();
    // Each call in flight completes (cancelled) and posts to the threads;
    // they must still run then.
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    while ((shared_.calls.load() > 0 || shared_.connections.load() > 0) &&
           absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    io_.stop();
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
  }

 private:
  void Accept() {
    acceptor_.async_accept(net::make_strand(io_), [this](beast::error_code ec,
                                                         tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted) return;
        return Accept();
      }
      if (shared_.connections.load() >=
          static_cast<size_t>(shared_.options.max_connections)) {
        beast::error_code ignored;
        socket.close(ignored);  // over the cap: refuse by closing
        return Accept();
      }
      std::shared_ptr<SessionBase> base;
      if (tls_.has_value()) {
        auto session =
            std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
                &shared_, std::move(socket), *tls_);
        session->Run();
        base = session;
      } else {
        auto session = std::make_shared<Session<beast::tcp_stream>>(
            &shared_, std::move(socket));
        session->Run();
        base = session;
      }
      {
        absl::MutexLock lock(&mu_);
        // Forget the sessions that have ended now and then.
        if (sessions_.size() > 2 * shared_.connections.load() + 64) {
          for (auto it = sessions_.begin(); it != sessions_.end();) {
            it = it->second.expired() ? sessions_.erase(it) : ++it;
          }
        }
        sessions_[base.get()] = base;
      }
      Accept();
    });
  }

  Shared shared_;
  net::io_context io_;
  tcp::acceptor acceptor_;
  std::optional<ssl::context> tls_;
  int port_ = 0;
  std::vector<std::thread> threads_;
  absl::Mutex mu_;
  std::map<SessionBase*, std::weak_ptr<SessionBase>> sessions_
      ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const HttpServerOptions& options, std::shared_ptr<grpc::Channel> channel) {
  auto server = std::make_unique<ServerImpl>(options, std::move(channel));
  if (absl::Status status = server->Init(); !status.ok()) return status;
  return server;
}

}  // namespace taskd::http
