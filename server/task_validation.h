// Checks of what callers send, before anything reaches the store. Every
// error is InvalidArgument and names the field, e.g.
//   task.policy_id: "abc" is not a UUID (8-4-4-4-12 hex digits)
//   task.state: set by the server; use the life-cycle methods
#ifndef TASKD_SERVER_TASK_VALIDATION_H_
#define TASKD_SERVER_TASK_VALIDATION_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/field_mask.pb.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

// Length limits, in bytes.
inline constexpr size_t kMaxIdLength = 128;
inline constexpr size_t kMaxTypeLength = 64;
inline constexpr size_t kMaxExecutorIdLength = 256;
inline constexpr size_t kMaxRequestIdLength = 128;
inline constexpr size_t kMaxEtagLength = 64;
// Executors: a task's max_assign_count, and its timeouts when not 0.
inline constexpr int kMaxAssignCount = 100;
inline constexpr absl::Duration kMinTimeout = absl::Milliseconds(100);
inline constexpr absl::Duration kMaxTimeout = absl::Hours(24 * 366);

// 8-4-4-4-12 hexadecimal digits, either case.
bool IsUuid(absl::string_view text);
// A new time-ordered UUID (RFC 9562 version 7: `now` to a quarter of a
// microsecond, then 62 random bits), lower case. Ids made later sort later,
// so that new tasks go to the end of the id and uuid indexes instead of a
// random page of each (issue 15).
std::string NewUuid(absl::Time now);

// The task CreateTask should store, built from the caller's `task`: checks
// the caller-settable fields, rejects server-owned ones, lower-cases UUIDs
// and defaults priority to normal. Does not assign id, uuid, state or time.
absl::StatusOr<tasks::v1::Task> ValidateNewTask(const tasks::v1::Task& task);
absl::Status ValidateRequestId(absl::string_view request_id);
// A timeout as a task carries it: 0 (none), or kMinTimeout..kMaxTimeout.
absl::Status CheckTimeout(absl::string_view field,
                          const google::protobuf::Duration& value);

// A task id named in a request: non-empty and within limits. `field` is the
// request field's name, for the message.
absl::Status ValidateTaskRef(absl::string_view id, absl::string_view field);
absl::Status ValidateEtag(absl::string_view etag);
absl::Status ValidateExecutorId(absl::string_view executor_id);

// Applies an UpdateTask request to `current`: only type, priority,
// policy_id and resource_id may be named (by proto or JSON name); an empty
// mask means every one of them that is non-empty in `patch`.
absl::StatusOr<tasks::v1::Task> ApplyUpdate(
    const tasks::v1::Task& current, const tasks::v1::Task& patch,
    const google::protobuf::FieldMask& mask);

}  // namespace taskd

#endif  // TASKD_SERVER_TASK_VALIDATION_H_
