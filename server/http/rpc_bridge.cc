#include "server/http/rpc_bridge.h"

#include <grpcpp/client_context.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/client_callback.h>

#include <vector>

#include "absl/synchronization/mutex.h"

namespace taskd::http {
namespace {

grpc::ByteBuffer ToBuffer(std::string bytes) {
  grpc::Slice slice(std::move(bytes));
  return grpc::ByteBuffer(&slice, 1);
}

std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

void Prepare(const RpcCallOptions& options, grpc::ClientContext* context) {
  if (!options.authorization.empty()) {
    context->AddMetadata("authorization", options.authorization);
  }
  if (options.timeout.has_value()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + *options.timeout));
  }
}

// A unary call's state, alive until its completion.
struct UnaryCall {
  grpc::ClientContext context;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
};

// A server-streaming call as a bidi reactor (the generic stub's only
// streaming form): one request written with WritesDone, then reads. It
// keeps itself alive (self_) until OnDone.
class StreamCall final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
      public RpcStream {
 public:
  StreamCall(std::function<void(std::string)> on_message,
             std::function<void(grpc::Status)> on_done)
      : on_message_(std::move(on_message)), on_done_(std::move(on_done)) {}

  void Begin(grpc::GenericStub* stub, const std::string& method,
             std::string request, const RpcCallOptions& options,
             std::shared_ptr<StreamCall> self) {
    self_ = std::move(self);
    Prepare(options, &context_);
    request_ = ToBuffer(std::move(request));
    stub->PrepareBidiStreamingCall(&context_, method, grpc::StubOptions(),
                                   this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    StartCall();
  }

  void Next() override {
    absl::MutexLock lock(&mu_);
    if (done_ || reading_) return;
    reading_ = true;
    StartRead(&response_);
  }

  void Cancel() override {
    absl::MutexLock lock(&mu_);
    if (!done_) context_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
    }
    if (ok) on_message_(ToString(response_));
    // Not ok: the stream ended; OnDone brings the status.
  }

  void OnWriteDone(bool) override {}

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    // The callbacks may hold their owner, which may hold this call: let
    // them go, so that nothing keeps the other alive once the call is over
    // (whether or not the owner ever got to drop its reference).
    std::function<void(grpc::Status)> done = std::move(on_done_);
    on_done_ = nullptr;
    on_message_ = nullptr;
    done(status);
    std::shared_ptr<StreamCall> self = std::move(self_);
  }

 private:
  std::function<void(std::string)> on_message_;
  std::function<void(grpc::Status)> on_done_;
  grpc::ClientContext context_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  // The first read is started with the call.
  bool reading_ ABSL_GUARDED_BY(mu_) = true;
  std::shared_ptr<StreamCall> self_;
};

}  // namespace

void RpcBridge::Unary(const std::string& method, std::string request,
                      const RpcCallOptions& options,
                      std::function<void(grpc::Status, std::string)> done) {
  auto call = std::make_shared<UnaryCall>();
  Prepare(options, &call->context);
  call->request = ToBuffer(std::move(request));
  stub_.UnaryCall(
      &call->context, method, grpc::StubOptions(), &call->request,
      &call->response, [call, done = std::move(done)](grpc::Status status) {
        done(status, status.ok() ? ToString(call->response) : std::string());
      });
}

std::shared_ptr<RpcStream> RpcBridge::ServerStream(
    const std::string& method, std::string request,
    const RpcCallOptions& options, std::function<void(std::string)> on_message,
    std::function<void(grpc::Status)> on_done) {
  auto call =
      std::make_shared<StreamCall>(std::move(on_message), std::move(on_done));
  call->Begin(&stub_, method, std::move(request), options, call);
  return call;
}

}  // namespace taskd::http
