// HttpServer: taskd's one HTTP listener, for everything that is not native
// gRPC:
//
//   POST /tasks.v1.TaskService/<Method>
//        gRPC-Web (application/grpc-web[+proto], application/grpc-web-text)
//        and the Connect protocol (application/json, application/proto;
//        application/connect+json, application/connect+proto for the
//        server streams), every method;
//   GET  /v1/tasks:watch?filter=...   WatchTasks as Server-Sent Events
//   GET  /v1/tasks:counts?group_by=.. WatchTaskCounts as Server-Sent Events
//   GET  /metrics                     Prometheus text
//   GET  /, /app.js, ...              the dashboard (web/, embedded)
//
// Every call goes through RpcBridge into taskd's own gRPC server (see
// rpc_bridge.h): one service core. This file only moves bytes.
//
// Connections are served by a few threads (Options::threads) on Boost.Asio;
// an open stream holds a socket, a parser and at most one message, never a
// thread. Limits: a request's header must arrive within request_timeout and
// fit max_header_bytes; its body fit max_body_bytes; at most
// max_connections at once (more are closed on accept). A streaming
// response ends the connection when it ends (no HTTP/1.1 pipelining
// behind a stream).
//
// Thread-safe.
#ifndef TASKD_SERVER_HTTP_HTTP_SERVER_H_
#define TASKD_SERVER_HTTP_HTTP_SERVER_H_

#include <grpcpp/channel.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace taskd::http {

struct HttpServerOptions {
  // host:port; port 0 picks a free port (see HttpServer::port()).
  std::string listen_address = "127.0.0.1:8080";
  // TLS, in PEM. Empty cert: plaintext. With client_ca, clients must
  // present a certificate it signed (as the gRPC port's --tls_client_ca).
  std::string tls_cert_pem;
  std::string tls_key_pem;
  std::string tls_client_ca_pem;
  // Largest request body. Default 2 MiB: a 1 MiB message (the gRPC port's
  // limit, which the service still enforces) in base64 with its framing.
  size_t max_body_bytes = 2 << 20;
  // Largest request header. Default 16 KiB.
  size_t max_header_bytes = 16 << 10;
  // A request must arrive whole within this, and a unary answer be taken
  // by the client within it; an idle keep-alive connection is closed after
  // it. The call itself is not bounded by it (its deadline is the client's
  // timeout header). Default 30 s.
  absl::Duration request_timeout = absl::Seconds(30);
  // Server-Sent Events streams get a comment this often, so that proxies
  // keep them open and a vanished client is noticed. Default 15 s.
  absl::Duration sse_keepalive = absl::Seconds(15);
  // Default 10,000.
  int max_connections = 10'000;
  // Threads that serve every connection. Default 2.
  int threads = 2;
  // The body of GET /metrics; empty: /metrics is not served here.
  std::function<std::string()> metrics;
};

class HttpServer {
 public:
  // Binds and starts serving; calls go to `channel` (taskd's own server's
  // in-process channel). Unavailable if the address cannot be bound,
  // InvalidArgument for a bad address or TLS material.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      const HttpServerOptions& options, std::shared_ptr<grpc::Channel> channel);

  virtual ~HttpServer() = default;

  // The port actually bound.
  virtual int port() const = 0;
  // Connections open now, and streaming responses among them.
  virtual size_t open_connections() const = 0;
  virtual size_t open_streams() const = 0;
  // Stops accepting, cancels the calls in flight and closes every
  // connection; returns when the threads have stopped. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace taskd::http

#endif  // TASKD_SERVER_HTTP_HTTP_SERVER_H_
