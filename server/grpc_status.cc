#include "server/grpc_status.h"

#include <optional>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/error_details.h"
#include "google/protobuf/descriptor.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace taskd {
namespace {

// The reason callers see when the code did not attach one.
std::string DefaultReason(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kNotFound:
      return "TASK_NOT_FOUND";
    case absl::StatusCode::kAlreadyExists:
      return "TASK_ALREADY_EXISTS";
    case absl::StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case absl::StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case absl::StatusCode::kDataLoss:
      return "DATA_LOSS";
    default:
      return absl::StatusCodeToString(code);
  }
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  absl::Status with_reason = status;
  if (!status.GetPayload(kErrorInfoUrl)) {
    with_reason = WithReason(status, DefaultReason(status.code()));
  }
  google::rpc::Status details;
  details.set_code(static_cast<int>(status.code()));
  details.set_message(std::string(status.message()));
  with_reason.ForEachPayload(
      [&](absl::string_view type_url, const absl::Cord& payload) {
        google::protobuf::Any* any = details.add_details();
        any->set_type_url(std::string(type_url));
        any->set_value(std::string(payload));
      });
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()),
                      details.SerializeAsString());
}

namespace {

std::optional<grpc::Status> UndecodableRequest(const char* method,
                                               const grpc::Status& status) {
  constexpr absl::string_view kPrefix = "/tasks.v1.TaskService/";
  if (status.error_code() != grpc::StatusCode::UNIMPLEMENTED ||
      method == nullptr || !absl::StartsWith(method, kPrefix)) {
    return std::nullopt;
  }
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "tasks.v1.TaskService");
  const google::protobuf::MethodDescriptor* descriptor =
      service == nullptr
          ? nullptr
          : service->FindMethodByName(
                std::string(absl::string_view(method).substr(kPrefix.size())));
  if (descriptor == nullptr) return std::nullopt;
  return ToGrpcStatus(WithReason(
      absl::InvalidArgumentError(absl::StrCat(
          "request: not a valid ", descriptor->input_type()->full_name(),
          " (malformed bytes, or a string field that is not UTF-8)")),
      "MALFORMED_REQUEST"));
}

// Applies UndecodableRequest to the status a call sends.
class MalformedRequestRewriter final : public grpc::experimental::Interceptor {
 public:
  explicit MalformedRequestRewriter(grpc::experimental::ServerRpcInfo* info)
      : info_(info) {}
  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      if (std::optional<grpc::Status> rewritten =
              UndecodableRequest(info_->method(), methods->GetSendStatus())) {
        methods->ModifySendStatus(*rewritten);
      }
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* const info_;
};

}  // namespace

grpc::experimental::Interceptor*
MalformedRequestInterceptor::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MalformedRequestRewriter(info);
}

}  // namespace taskd
