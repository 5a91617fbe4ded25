#include "query/order_by.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Canonical(const std::string& text) {
  auto order = ParseOrderBy(text);
  EXPECT_TRUE(order.ok()) << text << ": " << order.status();
  return order.ok() ? OrderByToString(*order) : "";
}

std::string ErrorOf(const std::string& text) {
  auto order = ParseOrderBy(text);
  EXPECT_FALSE(order.ok()) << text << " parsed";
  if (order.ok()) return "";
  EXPECT_EQ(order.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(order.status().message());
}

TEST(ParseOrderByTest, EmptyMeansEnqueuedAtThenId) {
  for (const char* text : {"", "  ", "\t\n"}) {
    auto order = ParseOrderBy(text);
    ASSERT_TRUE(order.ok()) << order.status();
    ASSERT_EQ(order->size(), 2u);
    EXPECT_EQ((*order)[0].field, TaskField::kEnqueuedAt);
    EXPECT_FALSE((*order)[0].descending);
    EXPECT_EQ((*order)[1].field, TaskField::kId);
    EXPECT_FALSE((*order)[1].descending);
  }
  EXPECT_EQ(Canonical(""), "enqueued_at asc, id asc");
  EXPECT_EQ(Canonical(""), Canonical("enqueuedAt"));
}

TEST(ParseOrderByTest, Directions) {
  auto order = ParseOrderBy("enqueuedAt desc, id");
  ASSERT_TRUE(order.ok()) << order.status();
  ASSERT_EQ(order->size(), 2u);
  EXPECT_EQ((*order)[0].field, TaskField::kEnqueuedAt);
  EXPECT_TRUE((*order)[0].descending);
  EXPECT_EQ((*order)[1].field, TaskField::kId);
  EXPECT_FALSE((*order)[1].descending);

  EXPECT_EQ(Canonical("type asc"), "type asc, id asc");
  EXPECT_EQ(Canonical("type desc"), "type desc, id asc");
  EXPECT_EQ(Canonical("type DESC"), "type desc, id asc");
  EXPECT_EQ(Canonical("type"), "type asc, id asc");
}

TEST(ParseOrderByTest, WhitespaceTolerant) {
  EXPECT_EQ(Canonical("  priority   desc ,state,revision\tdesc  "),
            "priority desc, state asc, revision desc, id asc");
  EXPECT_EQ(Canonical("priority desc,state"),
            "priority desc, state asc, id asc");
}

TEST(ParseOrderByTest, IdIsAppendedUnlessPresent) {
  EXPECT_EQ(Canonical("state"), "state asc, id asc");
  EXPECT_EQ(Canonical("id desc"), "id desc");
  EXPECT_EQ(Canonical("id"), "id asc");
  EXPECT_EQ(Canonical("id desc, state"), "id desc, state asc");
  EXPECT_EQ(Canonical("state, id desc"), "state asc, id desc");
}

TEST(ParseOrderByTest, ProtoAndJsonNamesPrintTheSame) {
  EXPECT_EQ(Canonical("enqueuedAt desc"), Canonical("enqueued_at desc"));
  EXPECT_EQ(Canonical("startedAt, completedAt, updatedAt"),
            "started_at asc, completed_at asc, updated_at asc, id asc");
  EXPECT_EQ(Canonical("result_code desc"), "result_code desc, id asc");
}

TEST(ParseOrderByTest, EveryOrderableFieldAndNoOther) {
  for (const FieldInfo& info : AllTaskFields()) {
    for (const char* name : {info.proto_name, info.json_name}) {
      auto order = ParseOrderBy(std::string(name) + " desc");
      if (info.orderable) {
        ASSERT_TRUE(order.ok()) << name << ": " << order.status();
        EXPECT_EQ(order->front().field, info.field);
        EXPECT_TRUE(order->front().descending);
        // Canonical text parses back to the same order.
        auto again = ParseOrderBy(OrderByToString(*order));
        ASSERT_TRUE(again.ok()) << again.status();
        EXPECT_EQ(OrderByToString(*again), OrderByToString(*order));
      } else {
        ASSERT_FALSE(order.ok()) << name;
        EXPECT_THAT(std::string(order.status().message()),
                    AllOf(StartsWith("order_by: column 1: "),
                          HasSubstr(std::string("\"") + name + "\"")));
      }
    }
  }
}

TEST(ParseOrderByErrorTest, UnknownField) {
  EXPECT_EQ(ErrorOf("state, enqueued desc"),
            R"(order_by: column 8: unknown field "enqueued")");
  EXPECT_EQ(ErrorOf("etag"), R"(order_by: column 1: unknown field "etag")");
}

TEST(ParseOrderByErrorTest, UnorderableField) {
  EXPECT_THAT(ErrorOf("state, tenant_id"),
              AllOf(StartsWith("order_by: column 8: cannot order by "
                               "\"tenant_id\""),
                    HasSubstr("enqueued_at")));
}

TEST(ParseOrderByErrorTest, BadDirection) {
  EXPECT_EQ(ErrorOf("state descending"),
            "order_by: column 7: expected asc or desc after \"state\", got "
            "\"descending\"");
  EXPECT_THAT(ErrorOf("state -1"),
              StartsWith("order_by: column 7: unexpected character"));
}

TEST(ParseOrderByErrorTest, RepeatedField) {
  EXPECT_EQ(ErrorOf("enqueuedAt desc, enqueued_at"),
            R"(order_by: column 18: field "enqueued_at" appears twice)");
  EXPECT_EQ(ErrorOf("id, id desc"),
            R"(order_by: column 5: field "id" appears twice)");
}

TEST(ParseOrderByErrorTest, Punctuation) {
  EXPECT_EQ(ErrorOf(",state"),
            "order_by: column 1: expected a field name before ','");
  EXPECT_EQ(ErrorOf("state,,type"),
            "order_by: column 7: expected a field name before ','");
  EXPECT_EQ(ErrorOf("state, "),
            "order_by: column 8: expected a field name after ','");
  EXPECT_THAT(ErrorOf("state;"),
              StartsWith("order_by: column 6: unexpected character"));
  EXPECT_THAT(ErrorOf("state desc type"),
              AllOf(StartsWith("order_by: column 12: unexpected \"type\""),
                    HasSubstr("','")));
  EXPECT_THAT(ErrorOf("\"state\""),
              StartsWith("order_by: column 1: unexpected character"));
}

TEST(CursorOfTest, ValuesOfTheKeys) {
  Task task;
  task.set_id("t-1");
  task.set_type("backup");
  task.set_state(Task::paused);
  task.set_priority("high");
  task.set_revision(9);
  task.mutable_enqueued_at()->set_seconds(100);
  task.mutable_enqueued_at()->set_nanos(5000);

  auto order = ParseOrderBy("priority desc, enqueuedAt, state, type");
  ASSERT_TRUE(order.ok()) << order.status();
  const std::vector<FieldValue> cursor = CursorOf(*order, task);
  ASSERT_EQ(cursor.size(), 5u);
  EXPECT_EQ(cursor[0], FieldValue(int64_t{5}));  // rank of "high"
  EXPECT_EQ(cursor[1], FieldValue(int64_t{100'000'005}));
  EXPECT_EQ(cursor[2], FieldValue(int64_t{Task::paused}));
  EXPECT_EQ(cursor[3], FieldValue(std::string("backup")));
  EXPECT_EQ(cursor[4], FieldValue(std::string("t-1")));

  auto by_default = ParseOrderBy("");
  ASSERT_TRUE(by_default.ok());
  EXPECT_EQ(CursorOf(*by_default, Task()),
            (std::vector<FieldValue>{int64_t{0}, std::string()}));
}

}  // namespace
}  // namespace taskd
