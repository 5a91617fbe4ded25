#include "client/task_format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "query/task_fields.h"

namespace taskd {
namespace {

using tasks::v1::Task;

std::string TimeText(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                          absl::FromUnixMicros(TimestampMicros(ts)),
                          absl::UTCTimeZone());
}

std::string OrDash(std::string text) { return text.empty() ? "-" : text; }

}  // namespace

std::string ToJson(const google::protobuf::Message& message, bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.preserve_proto_field_names = false;  // use json_name
  std::string json;
  // Cannot fail for our messages: they hold no Any of unknown type.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!pretty) return json;
  // The pretty printer ends with a newline already.
  if (!json.empty() && json.back() == '\n') json.pop_back();
  return json;
}

std::string ToTable(const std::vector<Task>& tasks) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "TYPE", "STATE", "RESULT", "PRIORITY", "EXECUTOR", "ENQUEUED",
       "UPDATED"}};
  for (const Task& task : tasks) {
    rows.push_back({task.id(), task.type(),
                    task.state() == Task::STATE_UNSPECIFIED
                        ? "-"
                        : Task::State_Name(task.state()),
                    task.result_code() == Task::RESULT_CODE_UNSPECIFIED
                        ? "-"
                        : Task::ResultCode_Name(task.result_code()),
                    OrDash(task.priority()), OrDash(task.executor_id()),
                    TimeText(task.enqueued_at()), TimeText(task.updated_at())});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace taskd
