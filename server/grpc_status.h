// The one place where absl::Status becomes grpc::Status. Canonical codes
// share their numbers, so the code passes through unchanged; so does the
// message, which names the field or state that was wrong. The details
// (base/error_details.h) go out as a google.rpc.Status in the
// grpc-status-details-bin trailer: always an ErrorInfo (a default reason
// from the code when none was set), and a BadRequest when fields were
// named. grpcurl prints them.
#ifndef TASKD_SERVER_GRPC_STATUS_H_
#define TASKD_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace taskd {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace taskd

#endif  // TASKD_SERVER_GRPC_STATUS_H_
