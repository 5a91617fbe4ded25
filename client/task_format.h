// How taskctl prints tasks: JSON in the schema's spelling, or a table.
#ifndef TASKD_CLIENT_TASK_FORMAT_H_
#define TASKD_CLIENT_TASK_FORMAT_H_

#include <string>
#include <vector>

#include "google/protobuf/message.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd {

// The proto3 JSON mapping with the schema's property names (json_name):
// `result_code`, `enqueuedAt`, enum values as "completed", "ok". Unset
// fields are omitted. `pretty` indents; otherwise one line.
std::string ToJson(const google::protobuf::Message& message, bool pretty);

// A fixed-width table with a header line, one task per row.
std::string ToTable(const std::vector<tasks::v1::Task>& tasks);

}  // namespace taskd

#endif  // TASKD_CLIENT_TASK_FORMAT_H_
