#include "server/task_validation.h"

#include <algorithm>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/error_details.h"
#include "query/task_fields.h"

namespace taskd {
namespace {

using tasks::v1::Task;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return WithFieldViolation(
      WithReason(absl::InvalidArgumentError(absl::StrCat(field, ": ", what)),
                 "INVALID_FIELD", {{"field", field}}),
      field, what);
}

// Printable text: no control characters (the proto layer already enforces
// UTF-8).
bool Printable(absl::string_view text) {
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

absl::Status CheckText(absl::string_view field, absl::string_view value,
                       size_t max_length, bool required) {
  if (value.empty()) {
    return required ? Invalid(field, "is required") : absl::OkStatus();
  }
  if (value.size() > max_length) {
    return Invalid(field, absl::StrFormat("is %d bytes long; the limit is %d",
                                          value.size(), max_length));
  }
  if (!Printable(value)) return Invalid(field, "contains control characters");
  return absl::OkStatus();
}

// Lower-cases *value if it is a UUID; an error naming `field` otherwise.
absl::Status CheckUuid(absl::string_view field, std::string* value) {
  if (value->empty()) return absl::OkStatus();
  if (!IsUuid(*value)) {
    std::string shown =
        value->size() > 64 ? value->substr(0, 64) + "..." : *value;
    return Invalid(
        field,
        absl::StrCat("\"", shown, "\" is not a UUID (8-4-4-4-12 hex digits)"));
  }
  absl::AsciiStrToLower(value);
  return absl::OkStatus();
}

absl::Status CheckPriority(absl::string_view field, std::string* value) {
  if (value->empty()) {
    *value = std::string(kDefaultPriority);
    return absl::OkStatus();
  }
  if (PriorityRank(*value) == 0) {
    return Invalid(field,
                   absl::StrCat("\"", value->substr(0, 64),
                                "\" is not a priority (low, belowNormal, "
                                "normal, aboveNormal, high)"));
  }
  return absl::OkStatus();
}

bool IdChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
         c == '_' || c == '.' || c == ':' || c == '~' || c == '@';
}

}  // namespace

bool IsUuid(absl::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return false;
    } else if (!absl::ascii_isxdigit(static_cast<unsigned char>(text[i]))) {
      return false;
    }
  }
  return true;
}

std::string NewUuid(absl::Time now) {
  thread_local std::mt19937_64 random([] {
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device();
  }());
  // RFC 9562 version 7: 48 bits of Unix milliseconds, then the version,
  // then 12 bits of the sub-millisecond fraction (its method 3), so that
  // ids made later sort later at a quarter-microsecond; 62 random bits.
  const int64_t micros = std::max<int64_t>(0, absl::ToUnixMicros(now));
  const uint64_t millis = static_cast<uint64_t>(micros / 1000);
  const uint64_t fraction = static_cast<uint64_t>(micros % 1000) * 4096 / 1000;
  const uint64_t high =
      ((millis & 0xffffffffffffULL) << 16) | 0x7000ULL | (fraction & 0xfff);
  uint64_t low = random();
  low = (low & ~(0xc0ULL << 56)) | (0x80ULL << 56);  // variant 10
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", high >> 32,
                         (high >> 16) & 0xffff, high & 0xffff, low >> 48,
                         low & 0xffffffffffffULL);
}

absl::StatusOr<Task> ValidateNewTask(const Task& task) {
  // Server-owned fields first: a caller must learn that they cannot be set.
  if (!task.uuid().empty()) {
    return Invalid("task.uuid", "is assigned by the server");
  }
  if (task.state() != Task::STATE_UNSPECIFIED) {
    return Invalid("task.state",
                   "is set by the server; new tasks are enqueued");
  }
  if (task.result_code() != Task::RESULT_CODE_UNSPECIFIED) {
    return Invalid("task.result_code", "is set by CompleteTask or CancelTask");
  }
  if (!task.executor_id().empty()) {
    return Invalid("task.executor_id", "is set by AssignTask");
  }
  if (task.has_enqueued_at() || task.has_started_at() ||
      task.has_completed_at() || task.has_updated_at()) {
    const char* field = task.has_enqueued_at()    ? "task.enqueuedAt"
                        : task.has_started_at()   ? "task.startedAt"
                        : task.has_completed_at() ? "task.completedAt"
                                                  : "task.updatedAt";
    return Invalid(field, "is set by the server");
  }
  if (task.revision() != 0)
    return Invalid("task.revision", "is set by the server");
  if (!task.etag().empty()) return Invalid("task.etag", "is set by the server");
  struct {
    bool set;
    const char* field;
    const char* what;
  } owned[] = {
      {task.assign_count() != 0, "task.assignCount",
       "is counted by the server"},
      {task.cancel_requested(), "task.cancelRequested", "is set by CancelTask"},
      {task.has_progress(), "task.progress", "is reported by heartbeats"},
      {task.has_assigned_at(), "task.assignedAt", "is set by the server"},
      {task.has_lease_expires_at(), "task.leaseExpiresAt",
       "is set by the server"},
      {task.has_deadline(), "task.deadline", "is set by the server"},
      {task.timeout() != tasks::v1::TIMEOUT_UNSPECIFIED, "task.timeout",
       "is set by the server"},
      {!task.lease_token().empty(), "task.leaseToken",
       "is issued by AcquireTask and AssignTask"},
  };
  for (const auto& o : owned) {
    if (o.set) return Invalid(o.field, o.what);
  }

  Task result;
  if (!task.id().empty()) {
    if (absl::Status s = CheckText("task.id", task.id(), kMaxIdLength, true);
        !s.ok()) {
      return s;
    }
    for (char c : task.id()) {
      if (!IdChar(c)) {
        return Invalid("task.id",
                       "may contain only letters, digits and - _ . : ~ @");
      }
    }
    result.set_id(task.id());
  }
  if (absl::Status s =
          CheckText("task.type", task.type(), kMaxTypeLength, true);
      !s.ok()) {
    return s;
  }
  result.set_type(task.type());
  result.set_priority(task.priority());
  if (absl::Status s =
          CheckPriority("task.priority", result.mutable_priority());
      !s.ok()) {
    return s;
  }
  result.set_policy_id(task.policy_id());
  result.set_resource_id(task.resource_id());
  result.set_tenant_id(task.tenant_id());
  for (auto [field, value] :
       {std::pair{"task.policy_id", result.mutable_policy_id()},
        std::pair{"task.resource_id", result.mutable_resource_id()},
        std::pair{"task.tenant_id", result.mutable_tenant_id()}}) {
    if (absl::Status s = CheckUuid(field, value); !s.ok()) return s;
  }
  if (task.max_assign_count() < 0 ||
      task.max_assign_count() > kMaxAssignCount) {
    return Invalid("task.maxAssignCount",
                   absl::StrFormat("is %d; it must be 0 (meaning 1) to %d",
                                   task.max_assign_count(), kMaxAssignCount));
  }
  result.set_max_assign_count(task.max_assign_count());
  struct {
    bool set;
    const google::protobuf::Duration& value;
    const char* field;
    google::protobuf::Duration* out;
  } timeouts[] = {
      {task.has_queue_timeout(), task.queue_timeout(), "task.queueTimeout",
       result.mutable_queue_timeout()},
      {task.has_ack_timeout(), task.ack_timeout(), "task.ackTimeout",
       result.mutable_ack_timeout()},
      {task.has_heart_beat_interval(), task.heart_beat_interval(),
       "task.heartBeatInterval", result.mutable_heart_beat_interval()},
      {task.has_exec_timeout(), task.exec_timeout(), "task.execTimeout",
       result.mutable_exec_timeout()},
  };
  for (const auto& t : timeouts) {
    if (!t.set) continue;
    if (absl::Status s = CheckTimeout(t.field, t.value); !s.ok()) return s;
    *t.out = t.value;
  }
  // Unset stays unset: the service applies its defaults.
  if (!task.has_queue_timeout()) result.clear_queue_timeout();
  if (!task.has_ack_timeout()) result.clear_ack_timeout();
  if (!task.has_heart_beat_interval()) result.clear_heart_beat_interval();
  if (!task.has_exec_timeout()) result.clear_exec_timeout();
  return result;
}

absl::Status CheckTimeout(absl::string_view field,
                          const google::protobuf::Duration& value) {
  if (value.seconds() < 0 || value.nanos() < 0 ||
      value.nanos() >= 1'000'000'000) {
    return Invalid(field, "must not be negative");
  }
  absl::Duration d =
      absl::Seconds(value.seconds()) + absl::Nanoseconds(value.nanos());
  if (d == absl::ZeroDuration()) return absl::OkStatus();  // none
  if (d < kMinTimeout) {
    return Invalid(field, absl::StrCat("is ", absl::FormatDuration(d),
                                       "; a timeout is 0 (none) or at least ",
                                       absl::FormatDuration(kMinTimeout)));
  }
  if (d > kMaxTimeout) {
    return Invalid(field, absl::StrCat("is ", absl::FormatDuration(d),
                                       "; the longest timeout is 366 days"));
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(absl::string_view request_id) {
  return CheckText("request_id", request_id, kMaxRequestIdLength, false);
}

absl::Status ValidateTaskRef(absl::string_view id, absl::string_view field) {
  return CheckText(field, id, kMaxIdLength, true);
}

absl::Status ValidateEtag(absl::string_view etag) {
  return CheckText("etag", etag, kMaxEtagLength, false);
}

absl::Status ValidateExecutorId(absl::string_view executor_id) {
  return CheckText("executor_id", executor_id, kMaxExecutorIdLength, true);
}

absl::StatusOr<Task> ApplyUpdate(const Task& current, const Task& patch,
                                 const google::protobuf::FieldMask& mask) {
  enum Path { kType, kPriority, kPolicy, kResource };
  std::vector<Path> paths;
  if (mask.paths_size() == 0) {
    // Without a mask every field the caller set is meant to be written, so
    // a set server-owned field is an error rather than silently ignored.
    if (patch.state() != Task::STATE_UNSPECIFIED) {
      return Invalid("task.state",
                     "is not writable by UpdateTask; use the life-cycle "
                     "methods");
    }
    if (patch.result_code() != Task::RESULT_CODE_UNSPECIFIED) {
      return Invalid("task.result_code", "is not writable by UpdateTask");
    }
    if (!patch.executor_id().empty()) {
      return Invalid("task.executor_id",
                     "is not writable by UpdateTask; use AssignTask");
    }
    if (!patch.uuid().empty() && patch.uuid() != current.uuid()) {
      return Invalid("task.uuid", "is not writable");
    }
    if (!patch.tenant_id().empty() &&
        patch.tenant_id() != current.tenant_id()) {
      return Invalid("task.tenant_id", "is not writable");
    }
    if (patch.has_enqueued_at() || patch.has_started_at() ||
        patch.has_completed_at() || patch.has_updated_at()) {
      return Invalid("task timestamps", "are set by the server");
    }
    if (!patch.type().empty()) paths.push_back(kType);
    if (!patch.priority().empty()) paths.push_back(kPriority);
    if (!patch.policy_id().empty()) paths.push_back(kPolicy);
    if (!patch.resource_id().empty()) paths.push_back(kResource);
    if (paths.empty()) {
      return Invalid("update_mask",
                     "is empty and the task sets no writable field (type, "
                     "priority, policy_id, resource_id)");
    }
  }
  for (const std::string& path : mask.paths()) {
    if (path == "type") {
      paths.push_back(kType);
    } else if (path == "priority") {
      paths.push_back(kPriority);
    } else if (path == "policy_id" || path == "policyId") {
      paths.push_back(kPolicy);
    } else if (path == "resource_id" || path == "resourceId") {
      paths.push_back(kResource);
    } else {
      return Invalid(
          absl::StrCat("update_mask \"", path.substr(0, 64), "\""),
          "is not writable by UpdateTask; writable: type, priority, "
          "policy_id, resource_id (state, executor_id, result_code and the "
          "timestamps change through the life-cycle methods)");
    }
  }
  Task next = current;
  for (Path path : paths) {
    switch (path) {
      case kType:
        if (absl::Status s =
                CheckText("task.type", patch.type(), kMaxTypeLength, true);
            !s.ok()) {
          return s;
        }
        next.set_type(patch.type());
        break;
      case kPriority:
        next.set_priority(patch.priority());
        if (absl::Status s =
                CheckPriority("task.priority", next.mutable_priority());
            !s.ok()) {
          return s;
        }
        break;
      case kPolicy:
        next.set_policy_id(patch.policy_id());
        if (absl::Status s =
                CheckUuid("task.policy_id", next.mutable_policy_id());
            !s.ok()) {
          return s;
        }
        break;
      case kResource:
        next.set_resource_id(patch.resource_id());
        if (absl::Status s =
                CheckUuid("task.resource_id", next.mutable_resource_id());
            !s.ok()) {
          return s;
        }
        break;
    }
  }
  return next;
}

}  // namespace taskd
