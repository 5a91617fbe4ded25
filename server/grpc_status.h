// The one place where absl::Status becomes grpc::Status. Canonical codes
// share their numbers, so the code passes through unchanged; so does the
// message, which names the field or state that was wrong. The details
// (base/error_details.h) go out as a google.rpc.Status in the
// grpc-status-details-bin trailer: always an ErrorInfo (a default reason
// from the code when none was set), and a BadRequest when fields were
// named. grpcurl prints them.
#ifndef TASKD_SERVER_GRPC_STATUS_H_
#define TASKD_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/server_interceptor.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace taskd {

grpc::Status ToGrpcStatus(const absl::Status& status);

// gRPC 1.51's callback API answers a request it cannot decode (malformed
// bytes, a string field that is not UTF-8) with a bare UNIMPLEMENTED, before
// any handler runs. Every tasks.v1.TaskService method is implemented, so for
// them that status can only mean such a request: this interceptor turns it
// into INVALID_ARGUMENT (reason MALFORMED_REQUEST) naming the request type.
// Register it before interceptors that observe the status sent.
class MalformedRequestInterceptor
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace taskd

#endif  // TASKD_SERVER_GRPC_STATUS_H_
