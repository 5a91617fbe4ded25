// Machine-readable error details carried inside absl::Status, for the
// service edge to send as google.rpc.Status details (server/grpc_status.h).
//
//   return WithReason(absl::AbortedError("etag ... does not match"),
//                     "ETAG_MISMATCH", {{"task_id", id}});
//   return WithFieldViolation(absl::InvalidArgumentError("task.type: ..."),
//                             "task.type", "is required");
//
// A reason is a stable UPPER_SNAKE identifier that callers may switch on;
// the message is for people and may change. Details travel as absl::Status
// payloads keyed by their type URL, so they survive being returned through
// any layer unchanged.
#ifndef TASKD_BASE_ERROR_DETAILS_H_
#define TASKD_BASE_ERROR_DETAILS_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace taskd {

inline constexpr char kErrorDomain[] = "taskd";
inline constexpr char kErrorInfoUrl[] =
    "type.googleapis.com/google.rpc.ErrorInfo";
inline constexpr char kBadRequestUrl[] =
    "type.googleapis.com/google.rpc.BadRequest";

// Sets the ErrorInfo (reason, domain "taskd", metadata) of `status`,
// replacing any earlier one. An OK status is returned unchanged.
absl::Status WithReason(
    absl::Status status, absl::string_view reason,
    std::initializer_list<std::pair<absl::string_view, absl::string_view>>
        metadata = {});

// Adds a BadRequest field violation to `status`.
absl::Status WithFieldViolation(absl::Status status, absl::string_view field,
                                absl::string_view description);

// The reason set by WithReason, or "" if none.
std::string ReasonOf(const absl::Status& status);
// The metadata value `key` set with the reason, or "" if none.
std::string ReasonMetadata(const absl::Status& status, absl::string_view key);

}  // namespace taskd

#endif  // TASKD_BASE_ERROR_DETAILS_H_
