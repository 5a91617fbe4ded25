// RpcBridge: how the HTTP face calls the service. Every call it makes goes
// through an in-process channel into taskd's own gRPC server, so that it
// meets exactly what a native gRPC call meets: the same authentication and
// tenant scoping (the HTTP request's Authorization header travels as the
// call's `authorization` metadata), validation, limits, interceptors, call
// log, metrics and error details. The HTTP face only translates framing;
// there is no second implementation of any call.
//
// Messages travel as serialized bytes (grpc::GenericStub): the bridge
// knows no method, so a method added to TaskService is served over HTTP
// with no change here.
//
// Thread-safe. Callbacks run on gRPC's threads and must not block.
#ifndef TASKD_SERVER_HTTP_RPC_BRIDGE_H_
#define TASKD_SERVER_HTTP_RPC_BRIDGE_H_

#include <grpcpp/channel.h>
#include <grpcpp/generic/generic_stub.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"

namespace taskd::http {

struct RpcCallOptions {
  // The value of the `authorization` metadata; empty: none.
  std::string authorization;
  // The call's deadline from now; unset: none (the service's default
  // deadline for writes applies, as for a gRPC client that sets none).
  std::optional<absl::Duration> timeout;
};

// One server-streaming call in progress.
class RpcStream {
 public:
  virtual ~RpcStream() = default;
  // Asks for the next message, after the caller has dealt with the last
  // one: at most one message is in the bridge at a time, so a slow HTTP
  // client slows its own stream and holds no queue.
  virtual void Next() = 0;
  // Ends the call (the HTTP client left); on_done follows with CANCELLED
  // unless the call had ended already.
  virtual void Cancel() = 0;
};

class RpcBridge {
 public:
  explicit RpcBridge(std::shared_ptr<grpc::Channel> channel)
      : channel_(std::move(channel)), stub_(channel_) {}

  // `method` is the full path, "/tasks.v1.TaskService/GetTask". `done`
  // gets the status and, if OK, the response's bytes.
  void Unary(const std::string& method, std::string request,
             const RpcCallOptions& options,
             std::function<void(grpc::Status, std::string)> done);

  // A server-streaming call. `on_message` gets each response's bytes; the
  // next comes only after RpcStream::Next(). `on_done` gets the final
  // status, exactly once, after which the stream is inert.
  std::shared_ptr<RpcStream> ServerStream(
      const std::string& method, std::string request,
      const RpcCallOptions& options,
      std::function<void(std::string)> on_message,
      std::function<void(grpc::Status)> on_done);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
};

}  // namespace taskd::http

#endif  // TASKD_SERVER_HTTP_RPC_BRIDGE_H_
