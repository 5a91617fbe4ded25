// The one place where absl::Status becomes grpc::Status. Canonical codes
// share their numbers, so the code passes through unchanged; so does the
// message, which names the field or state that was wrong.
#ifndef TASKD_SERVER_GRPC_STATUS_H_
#define TASKD_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace taskd {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace taskd

#endif  // TASKD_SERVER_GRPC_STATUS_H_
