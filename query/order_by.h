// OrderBy: the ordering of a ListTasks page, from an AIP-132 `order_by`
// string such as "enqueuedAt desc, id".
//
// Keys are orderable fields (query/task_fields.h) by proto or JSON name, each
// optionally followed by `asc` or `desc`. The result always ends with `id`
// (ascending unless the text orders id itself), so the order is total and
// keyset paging is exact. An empty text means "enqueuedAt, id".
#ifndef TASKD_QUERY_ORDER_BY_H_
#define TASKD_QUERY_ORDER_BY_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "query/task_fields.h"

namespace taskd {

struct OrderKey {
  TaskField field;
  bool descending = false;
};

using OrderBy = std::vector<OrderKey>;

// InvalidArgument naming the column and the problem for an unknown or
// unorderable field, a bad direction, a repeated field or trailing garbage.
absl::StatusOr<OrderBy> ParseOrderBy(std::string_view text);

// Canonical text, e.g. "enqueued_at asc, id asc"; equal orders print equal.
std::string OrderByToString(const OrderBy& order);

// The values of `order`'s keys for `task`: the keyset cursor after `task`.
std::vector<FieldValue> CursorOf(const OrderBy& order,
                                 const tasks::v1::Task& task);

}  // namespace taskd

#endif  // TASKD_QUERY_ORDER_BY_H_
