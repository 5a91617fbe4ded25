#include "query/filter.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

absl::Time At(const char* rfc3339) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) {
    ADD_FAILURE() << rfc3339 << ": " << err;
  }
  return t;
}

Task SampleTask() {
  Task task;
  task.set_id("t-0001");
  task.set_uuid("6f9619ff-8b86-d011-b42d-00cf4fc964ff");
  task.set_type("backup");
  task.set_state(Task::started);
  task.set_priority("aboveNormal");
  task.set_policy_id("policy-1");
  task.set_resource_id("res-1");
  task.set_executor_id("agent-7");
  *task.mutable_enqueued_at() = ToTimestamp(At("2026-11-01T10:00:00Z"));
  *task.mutable_started_at() = ToTimestamp(At("2026-11-01T10:05:00Z"));
  *task.mutable_updated_at() = ToTimestamp(At("2026-11-01T10:05:00Z"));
  task.set_tenant_id("tenant-a");
  task.set_revision(42);
  return task;
}

std::shared_ptr<const FilterExpr> MustParse(const std::string& text) {
  auto filter = ParseFilter(text);
  EXPECT_TRUE(filter.ok()) << text << ": " << filter.status();
  return filter.ok() ? *filter : nullptr;
}

// Parses `text` and evaluates it on `task`; a parse error fails the test.
bool Eval(const std::string& text, const Task& task) {
  auto filter = ParseFilter(text);
  EXPECT_TRUE(filter.ok()) << text << ": " << filter.status();
  if (!filter.ok()) return false;
  EXPECT_NE(*filter, nullptr) << text;
  return Matches(filter->get(), task);
}

std::string ErrorOf(const std::string& text) {
  auto filter = ParseFilter(text);
  EXPECT_FALSE(filter.ok()) << text << " parsed";
  if (filter.ok()) return "";
  EXPECT_EQ(filter.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(filter.status().message());
}

TEST(ParseFilterTest, BlankTextMatchesEverything) {
  for (const char* text : {"", " ", "\t\n  \r"}) {
    auto filter = ParseFilter(text);
    ASSERT_TRUE(filter.ok()) << filter.status();
    EXPECT_EQ(*filter, nullptr);
  }
  EXPECT_TRUE(Matches(nullptr, SampleTask()));
  EXPECT_TRUE(Matches(nullptr, Task()));
}

TEST(ParseFilterTest, StringComparators) {
  const Task task = SampleTask();  // type "backup"
  EXPECT_TRUE(Eval(R"(type = "backup")", task));
  EXPECT_FALSE(Eval(R"(type = "restore")", task));
  EXPECT_TRUE(Eval(R"(type != "restore")", task));
  EXPECT_FALSE(Eval(R"(type != "backup")", task));
  EXPECT_TRUE(Eval(R"(type < "backuq")", task));
  EXPECT_FALSE(Eval(R"(type < "backup")", task));
  EXPECT_TRUE(Eval(R"(type <= "backup")", task));
  EXPECT_FALSE(Eval(R"(type <= "backuo")", task));
  EXPECT_TRUE(Eval(R"(type > "backuo")", task));
  EXPECT_FALSE(Eval(R"(type > "backup")", task));
  EXPECT_TRUE(Eval(R"(type >= "backup")", task));
  EXPECT_FALSE(Eval(R"(type >= "backupa")", task));
}

TEST(ParseFilterTest, IntegerComparators) {
  const Task task = SampleTask();  // revision 42
  EXPECT_TRUE(Eval("revision = 42", task));
  EXPECT_TRUE(Eval(R"(revision = "42")", task));
  EXPECT_FALSE(Eval("revision = 41", task));
  EXPECT_TRUE(Eval("revision != 41", task));
  EXPECT_FALSE(Eval("revision != 42", task));
  EXPECT_TRUE(Eval("revision < 43", task));
  EXPECT_FALSE(Eval("revision < 42", task));
  EXPECT_TRUE(Eval("revision <= 42", task));
  EXPECT_FALSE(Eval("revision <= 41", task));
  EXPECT_TRUE(Eval("revision > 41", task));
  EXPECT_FALSE(Eval("revision > 42", task));
  EXPECT_TRUE(Eval("revision >= 42", task));
  EXPECT_FALSE(Eval("revision >= 43", task));
  // Numeric, not textual: "100" sorts before "42" as text.
  EXPECT_TRUE(Eval("revision < 100", task));
  EXPECT_TRUE(Eval("revision > -5", task));
  EXPECT_TRUE(Eval(R"(revision > "-5")", task));
  EXPECT_TRUE(Eval("revision < 9223372036854775807", task));
}

TEST(ParseFilterTest, ComparatorsNeedNoSpaces) {
  const Task task = SampleTask();
  EXPECT_TRUE(Eval(R"(type="backup")", task));
  EXPECT_TRUE(Eval("revision>=42", task));
  EXPECT_TRUE(Eval("revision<=42 revision!=1", task));
  EXPECT_TRUE(Eval("type=backup AND state=started", task));
}

TEST(ParseFilterTest, StringsCompareAsBytes) {
  Task task = SampleTask();
  task.set_type("\xc3\xa9t\xc3\xa9");  // "été": its first byte is above 'z'
  EXPECT_TRUE(Eval(R"(type > "zzz")", task));
  task.set_type("B");
  EXPECT_TRUE(Eval(R"(type < "a")", task));  // case-sensitive, 'B' < 'a'
  task.set_type("ab");
  EXPECT_TRUE(Eval(R"(type > "a")", task));  // a prefix sorts first
}

TEST(ParseFilterTest, StringEscapesAndBareWords) {
  Task task = SampleTask();
  task.set_type(R"(say "hi" \ bye)");
  EXPECT_TRUE(Eval(R"(type = "say \"hi\" \\ bye")", task));
  task.set_policy_id("3f2a-9c.1_x");
  EXPECT_TRUE(Eval("policy_id = 3f2a-9c.1_x", task));
  task.set_executor_id("");
  EXPECT_TRUE(Eval(R"(executor_id = "")", task));
  auto filter = MustParse(R"(type = "a b")");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(std::get<std::string>(filter->value), "a b");
}

TEST(ParseFilterTest, EveryState) {
  const std::vector<std::pair<const char*, Task::State>> states = {
      {"enqueued", Task::enqueued},   {"assigned", Task::assigned},
      {"started", Task::started},     {"paused", Task::paused},
      {"completed", Task::completed},
  };
  for (const auto& [name, state] : states) {
    Task task = SampleTask();
    task.set_state(state);
    EXPECT_TRUE(Eval(absl::StrCat("state = \"", name, "\""), task)) << name;
    EXPECT_TRUE(Eval(absl::StrCat("state = ", name), task)) << name;
    for (const auto& [other_name, other] : states) {
      if (other == state) continue;
      EXPECT_FALSE(Eval(absl::StrCat("state = ", other_name), task));
    }
    auto filter = MustParse(absl::StrCat("state = ", name));
    ASSERT_NE(filter, nullptr);
    EXPECT_EQ(std::get<int64_t>(filter->value), static_cast<int64_t>(state));
  }
}

TEST(ParseFilterTest, StatesOrderByLifeCycle) {
  Task task = SampleTask();
  task.set_state(Task::assigned);
  EXPECT_TRUE(Eval("state < started", task));
  EXPECT_TRUE(Eval("state > enqueued", task));
  EXPECT_FALSE(Eval("state >= paused", task));
}

TEST(ParseFilterTest, EveryResultCode) {
  const std::vector<std::pair<const char*, Task::ResultCode>> codes = {
      {"ok", Task::ok},
      {"error", Task::error},
      {"warning", Task::warning},
      {"cancelled", Task::cancelled},
      {"abandoned", Task::abandoned},
      {"timedout", Task::timedout},
  };
  for (const auto& [name, code] : codes) {
    Task task = SampleTask();
    task.set_result_code(code);
    EXPECT_TRUE(Eval(absl::StrCat("result_code = \"", name, "\""), task));
    EXPECT_TRUE(Eval(absl::StrCat("result_code = ", name), task));
    for (const auto& [other_name, other] : codes) {
      if (other == code) continue;
      EXPECT_FALSE(Eval(absl::StrCat("result_code = ", other_name), task));
    }
  }
  // Unset is not any code, and not "present".
  const Task running = SampleTask();
  EXPECT_FALSE(Eval("result_code = ok", running));
  EXPECT_FALSE(Eval("result_code:*", running));
  EXPECT_TRUE(Eval("NOT result_code:*", running));
}

TEST(ParseFilterTest, PriorityComparesByRank) {
  const std::vector<std::string> ranked = {"low", "belowNormal", "normal",
                                           "aboveNormal", "high"};
  for (size_t i = 0; i < ranked.size(); ++i) {
    Task task = SampleTask();
    task.set_priority(ranked[i]);
    EXPECT_TRUE(Eval(absl::StrCat("priority = ", ranked[i]), task));
    for (size_t j = 0; j < ranked.size(); ++j) {
      const std::string rhs = absl::StrCat("\"", ranked[j], "\"");
      EXPECT_EQ(Eval("priority < " + rhs, task), i < j) << ranked[i];
      EXPECT_EQ(Eval("priority <= " + rhs, task), i <= j) << ranked[i];
      EXPECT_EQ(Eval("priority > " + rhs, task), i > j) << ranked[i];
      EXPECT_EQ(Eval("priority >= " + rhs, task), i >= j) << ranked[i];
      EXPECT_EQ(Eval("priority != " + rhs, task), i != j) << ranked[i];
    }
  }
  // Alphabetically "high" < "low"; by rank it is the other way round.
  Task high = SampleTask();
  high.set_priority("high");
  EXPECT_TRUE(Eval("priority > low", high));
}

TEST(ParseFilterTest, Timestamps) {
  const Task task = SampleTask();  // enqueued 2026-11-01T10:00:00Z
  EXPECT_TRUE(Eval(R"(enqueuedAt = "2026-11-01T10:00:00Z")", task));
  EXPECT_TRUE(Eval(R"(enqueued_at = "2026-11-01T12:00:00+02:00")", task));
  EXPECT_TRUE(Eval(R"(enqueuedAt >= "2026-11-01T00:00:00Z")", task));
  EXPECT_TRUE(Eval(R"(enqueuedAt < "2026-11-01T10:00:00.000001Z")", task));
  EXPECT_FALSE(Eval(R"(enqueuedAt > "2026-11-01T10:00:00Z")", task));
  EXPECT_TRUE(Eval(R"(enqueuedAt > "2026-11-01T09:59:59.999999Z")", task));
  EXPECT_FALSE(Eval(R"(completedAt < "1970-01-01T00:00:01Z")", task))
      << "an unset timestamp compares as nothing";
  EXPECT_FALSE(Eval("completedAt:*", task));
  EXPECT_TRUE(Eval("startedAt:*", task));

  auto filter = MustParse(R"(updatedAt >= "2026-11-01T00:00:00.123456789Z")");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(std::get<int64_t>(filter->value),
            absl::ToUnixMicros(At("2026-11-01T00:00:00.123456Z")));
  filter = MustParse(R"(updatedAt < "1969-12-31T23:59:59Z")");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(std::get<int64_t>(filter->value), -1'000'000);
}

TEST(ParseFilterTest, UnsetTimestampsMatchOnlyNotEqual) {
  Task unset = SampleTask();
  unset.clear_completed_at();
  Task before_epoch = SampleTask();
  *before_epoch.mutable_completed_at() =
      ToTimestamp(At("1969-07-20T20:17:40Z"));
  for (const char* x :
       {"1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z", "2026-11-01T00:00:00Z",
        "1969-12-31T23:59:59Z", "0001-01-01T00:00:00Z"}) {
    for (const char* op : {"<", "<=", ">", ">=", "="}) {
      const std::string text = absl::StrCat("completedAt ", op, " \"", x, "\"");
      EXPECT_FALSE(Eval(text, unset)) << text;
      // NOT of the comparison is its exact complement, unset included.
      EXPECT_TRUE(Eval("NOT " + text, unset)) << text;
    }
    const std::string ne = absl::StrCat("completedAt != \"", x, "\"");
    EXPECT_FALSE(Eval("completedAt:* AND " + ne, unset)) << ne;
    // The epoch itself is how "unset" is stored, so it is the one instant
    // that an unset timestamp does not differ from.
    if (std::string(x) == "1970-01-01T00:00:00Z") continue;
    EXPECT_TRUE(Eval(ne, unset)) << ne;
  }
  // Set values, also before the epoch (negative micros), still compare.
  EXPECT_TRUE(Eval(R"(completedAt < "1970-01-01T00:00:00Z")", before_epoch));
  EXPECT_TRUE(Eval(R"(completedAt <= "1969-07-20T20:17:40Z")", before_epoch));
  EXPECT_TRUE(Eval(R"(completedAt = "1969-07-20T20:17:40Z")", before_epoch));
  EXPECT_FALSE(Eval(R"(completedAt > "1970-01-01T00:00:00Z")", before_epoch));
}

TEST(ParseFilterTest, UnsetEnumsAndPriorityMatchOnlyNotEqual) {
  Task unset;  // no state, no result code, no priority
  unset.set_id("t");
  EXPECT_FALSE(Eval("state < started", unset));
  EXPECT_FALSE(Eval("state <= enqueued", unset));
  EXPECT_FALSE(Eval("state = enqueued", unset));
  EXPECT_FALSE(Eval("state > enqueued", unset));
  EXPECT_TRUE(Eval("state != started", unset));
  EXPECT_FALSE(Eval("result_code < warning", unset));
  EXPECT_FALSE(Eval("result_code <= ok", unset));
  EXPECT_TRUE(Eval("result_code != ok", unset));
  EXPECT_TRUE(Eval("NOT result_code < warning", unset));
  EXPECT_FALSE(Eval("priority < normal", unset));
  EXPECT_FALSE(Eval("priority <= low", unset));
  EXPECT_TRUE(Eval("priority != low", unset));

  Task task = SampleTask();  // started, no result code, aboveNormal
  EXPECT_TRUE(Eval("state < paused", task));
  EXPECT_FALSE(Eval("result_code <= timedout", task));
  task.set_result_code(Task::ok);
  EXPECT_TRUE(Eval("result_code <= timedout", task));
  EXPECT_TRUE(Eval("priority < high", task));
}

TEST(ParseFilterTest, UnsetGuardIsInTheTreeOnlyWhereNeeded) {
  // Needed: the bare comparison would accept the unset value 0.
  for (const char* text :
       {R"(completedAt < "2026-01-01T00:00:00Z")",
        R"(completed_at <= "2026-01-01T00:00:00Z")",
        R"(startedAt >= "1969-01-01T00:00:00Z")",
        R"(updatedAt = "1970-01-01T00:00:00Z")", "state < started",
        "result_code <= error", "priority < normal"}) {
    auto filter = MustParse(text);
    ASSERT_NE(filter, nullptr) << text;
    ASSERT_EQ(filter->kind, FilterExpr::Kind::kAnd) << text;
    ASSERT_EQ(filter->children.size(), 2u) << text;
    EXPECT_EQ(filter->children[0].kind, FilterExpr::Kind::kPresent) << text;
    EXPECT_EQ(filter->children[1].kind, FilterExpr::Kind::kCompare) << text;
    EXPECT_EQ(filter->children[0].field, filter->children[1].field) << text;
  }
  // Not needed: the comparison already rejects 0, or it is != (which keeps
  // matching unset values), or the field has no "unset" (strings, revision).
  for (const char* text :
       {R"(completedAt >= "2026-01-01T00:00:00Z")",
        R"(completedAt > "1970-01-01T00:00:00Z")",
        R"(completedAt = "2026-01-01T00:00:00Z")",
        R"(completedAt != "2026-01-01T00:00:00Z")",
        R"(completedAt < "1969-01-01T00:00:00Z")", "state = started",
        "state >= enqueued", "result_code = ok", "priority > low",
        "priority != normal", R"(executor_id < "a")", "revision < 5",
        "revision = 0"}) {
    auto filter = MustParse(text);
    ASSERT_NE(filter, nullptr) << text;
    EXPECT_EQ(filter->kind, FilterExpr::Kind::kCompare) << text;
  }
  // Guarded conditions splice into an enclosing conjunction and do not count
  // against the condition limit.
  auto filter = MustParse("type = a AND state < started");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(filter->kind, FilterExpr::Kind::kAnd);
  EXPECT_EQ(filter->children.size(), 3u);
  std::string many;
  for (int i = 0; i < 256; ++i) many += "state < paused ";
  EXPECT_TRUE(ParseFilter(many).ok());
}

TEST(ParseFilterTest, EmptyStringIsAnOrdinaryValue) {
  Task task = SampleTask();
  task.set_executor_id("");
  EXPECT_TRUE(Eval(R"(executor_id < "a")", task));
  EXPECT_TRUE(Eval(R"(executor_id = "")", task));
  EXPECT_FALSE(Eval("executor_id:*", task));
}

TEST(ParseFilterTest, ProtoAndJsonNames) {
  const Task task = SampleTask();
  for (const FieldInfo& info : AllTaskFields()) {
    auto by_proto = MustParse(absl::StrCat(info.proto_name, ":*"));
    auto by_json = MustParse(absl::StrCat(info.json_name, ":*"));
    ASSERT_NE(by_proto, nullptr);
    ASSERT_NE(by_json, nullptr);
    EXPECT_EQ(by_proto->field, info.field) << info.proto_name;
    EXPECT_EQ(by_json->field, info.field) << info.json_name;
    EXPECT_EQ(by_proto->kind, FilterExpr::Kind::kPresent);
  }
  EXPECT_TRUE(
      Eval(R"(completed_at:* OR startedAt = "2026-11-01T10:05:00Z")", task));
}

TEST(ParseFilterTest, PresenceOfEveryKind) {
  Task empty;
  Task full = SampleTask();
  full.set_result_code(Task::ok);
  *full.mutable_completed_at() = ToTimestamp(At("2026-11-02T00:00:00Z"));
  full.set_assign_count(1);
  full.set_cancel_requested(true);
  *full.mutable_assigned_at() = ToTimestamp(At("2026-11-01T12:00:00Z"));
  *full.mutable_deadline() = ToTimestamp(At("2026-11-03T00:00:00Z"));
  for (const FieldInfo& info : AllTaskFields()) {
    const std::string text = absl::StrCat(info.proto_name, ":*");
    EXPECT_FALSE(Eval(text, empty)) << text;
    EXPECT_TRUE(Eval(text, full)) << text;
    EXPECT_TRUE(Eval("NOT " + text, empty)) << text;
  }
  Task zero_priority = SampleTask();
  zero_priority.set_priority("");
  EXPECT_FALSE(Eval("priority:*", zero_priority));
}

TEST(ParseFilterTest, OrBindsTighterThanAnd) {
  // AIP-160: "a AND b OR c" is "a AND (b OR c)".
  auto filter = MustParse("type = a AND type = b OR state = started");
  ASSERT_NE(filter, nullptr);
  ASSERT_EQ(filter->kind, FilterExpr::Kind::kAnd);
  ASSERT_EQ(filter->children.size(), 2u);
  EXPECT_EQ(filter->children[0].kind, FilterExpr::Kind::kCompare);
  EXPECT_EQ(filter->children[1].kind, FilterExpr::Kind::kOr);
  filter = MustParse("type = a OR type = b AND state = started");
  ASSERT_NE(filter, nullptr);
  ASSERT_EQ(filter->kind, FilterExpr::Kind::kAnd);
  ASSERT_EQ(filter->children.size(), 2u);
  EXPECT_EQ(filter->children[0].kind, FilterExpr::Kind::kOr);
  EXPECT_EQ(filter->children[1].kind, FilterExpr::Kind::kCompare);

  Task task = SampleTask();
  task.set_type("a");
  task.set_state(Task::paused);
  // (a OR b) AND started: false, although "a" alone holds.
  EXPECT_FALSE(Eval("type = a OR type = b AND state = started", task));
  // a OR (b AND started): true through the left side alone.
  EXPECT_TRUE(Eval("type = a OR (type = b AND state = started)", task));
  // started AND (b OR a): false.
  EXPECT_FALSE(Eval("state = started AND type = b OR type = a", task));
  task.set_state(Task::started);
  EXPECT_TRUE(Eval("state = started AND type = b OR type = a", task));
  // A chain of ORs between ANDs: (x OR a) AND (started OR y).
  EXPECT_TRUE(
      Eval("type = x OR type = a AND state = started OR type = y", task));
  task.set_state(Task::paused);
  EXPECT_FALSE(
      Eval("type = x OR type = a AND state = started OR type = y", task));
  // ...which is not (x) OR (a AND started) OR (y).
  task.set_type("y");
  EXPECT_FALSE(
      Eval("type = x OR type = a AND state = started OR type = y", task));
  EXPECT_TRUE(
      Eval("type = x OR (type = a AND state = started) OR type = y", task));
}

TEST(ParseFilterTest, NotBindsTighterThanOr) {
  const Task task = SampleTask();  // started, type backup
  // (NOT started) OR backup: true.
  EXPECT_TRUE(Eval("NOT state = started OR type = backup", task));
  EXPECT_TRUE(Eval("-state = started OR type = backup", task));
  // NOT (started OR backup): false.
  EXPECT_FALSE(Eval("NOT (state = started OR type = backup)", task));
  auto filter = MustParse("NOT state = started OR type = backup");
  ASSERT_NE(filter, nullptr);
  ASSERT_EQ(filter->kind, FilterExpr::Kind::kOr);
  EXPECT_EQ(filter->children[0].kind, FilterExpr::Kind::kNot);
}

TEST(ParseFilterTest, JuxtapositionMeansAnd) {
  const Task task = SampleTask();
  EXPECT_TRUE(Eval("type = backup state = started", task));
  EXPECT_FALSE(Eval("type = backup state = paused", task));
  auto filter = MustParse("type = backup state = started revision = 42");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(filter->kind, FilterExpr::Kind::kAnd);
  EXPECT_EQ(filter->children.size(), 3u);
  // Juxtaposition binds like AND, looser than OR: x AND (paused OR 42).
  EXPECT_FALSE(Eval("type = x state = paused OR revision = 42", task));
  EXPECT_TRUE(Eval("type = backup state = paused OR revision = 42", task));
  EXPECT_TRUE(Eval("(type = x state = paused) OR revision = 42", task));
  filter = MustParse("type = x state = paused OR revision = 42");
  ASSERT_NE(filter, nullptr);
  ASSERT_EQ(filter->kind, FilterExpr::Kind::kAnd);
  ASSERT_EQ(filter->children.size(), 2u);
  EXPECT_EQ(filter->children[1].kind, FilterExpr::Kind::kOr);
  // Juxtaposition and AND mix into one conjunction.
  filter = MustParse("type = a executor_id = b AND revision = 1 id = d");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(filter->kind, FilterExpr::Kind::kAnd);
  EXPECT_EQ(filter->children.size(), 4u);
}

TEST(ParseFilterTest, NotAndMinus) {
  const Task task = SampleTask();
  EXPECT_FALSE(Eval("NOT state = started", task));
  EXPECT_TRUE(Eval("NOT state = completed", task));
  EXPECT_FALSE(Eval("-state = started", task));
  EXPECT_TRUE(Eval("-state = completed", task));
  EXPECT_TRUE(Eval("- state = completed", task));
  EXPECT_TRUE(Eval("NOT NOT state = started", task));
  EXPECT_TRUE(Eval("- -state = started", task));
  EXPECT_TRUE(Eval("NOT -state = started", task));
  EXPECT_TRUE(Eval("NOT executor_id:* OR type = backup", task));
  // NOT applies to the next term only.
  EXPECT_TRUE(Eval("NOT state = paused AND type = backup", task));
  EXPECT_FALSE(Eval("NOT (state = started AND type = backup)", task));
  EXPECT_TRUE(Eval("-(state = paused OR type = restore)", task));
  auto filter = MustParse("NOT type = x");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(filter->kind, FilterExpr::Kind::kNot);
  ASSERT_EQ(filter->children.size(), 1u);
}

TEST(ParseFilterTest, Parentheses) {
  const Task task = SampleTask();
  EXPECT_TRUE(Eval("(type = backup)", task));
  EXPECT_TRUE(Eval("((((type = backup))))", task));
  EXPECT_TRUE(Eval("(type = x OR type = backup) (state = started)", task));
  EXPECT_FALSE(Eval("type = x OR (type = backup AND state = paused)", task));
  EXPECT_TRUE(
      Eval("(priority >= \"aboveNormal\" OR type != \"backup\") AND NOT "
           "result_code:*",
           task));
}

TEST(ParseFilterTest, HeaderExamples) {
  Task task = SampleTask();
  task.set_tenant_id("3f2a-x");
  EXPECT_TRUE(Eval(R"(state = "started" AND tenant_id = "3f2a-x")", task));
  EXPECT_FALSE(Eval(
      R"((priority >= "aboveNormal" OR type != "backup") AND NOT executor_id:*)",
      task));
  task.set_state(Task::completed);
  task.set_result_code(Task::error);
  *task.mutable_completed_at() = ToTimestamp(At("2026-11-02T00:00:00Z"));
  EXPECT_TRUE(
      Eval(R"(completedAt >= "2026-11-01T00:00:00Z" AND result_code = "error")",
           task));
  EXPECT_FALSE(Eval(R"(-state = "completed")", task));
}

TEST(ParseFilterTest, FlattensNestedConjunctions) {
  auto filter = MustParse("type = a AND (type = b AND type = c)");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(filter->kind, FilterExpr::Kind::kAnd);
  EXPECT_EQ(filter->children.size(), 3u);
  filter = MustParse("(type = a OR type = b) OR type = c");
  ASSERT_NE(filter, nullptr);
  EXPECT_EQ(filter->kind, FilterExpr::Kind::kOr);
  EXPECT_EQ(filter->children.size(), 3u);
}

// Error messages: "filter: column N: <what>", N 1-based.
TEST(ParseFilterErrorTest, UnknownField) {
  EXPECT_EQ(ErrorOf(R"(state = "started" AND stat = "x")"),
            R"(filter: column 23: unknown field "stat")");
  EXPECT_THAT(ErrorOf("etag = x"),
              AllOf(StartsWith("filter: column 1: "), HasSubstr("\"etag\"")));
  EXPECT_THAT(ErrorOf("type = a and state = b"),
              AllOf(StartsWith("filter: column 10: "), HasSubstr("\"and\""),
                    HasSubstr("upper case")));
}

TEST(ParseFilterErrorTest, UnknownEnumValues) {
  EXPECT_EQ(ErrorOf(R"(state = "begun")"),
            "filter: column 9: \"begun\" is not a state (enqueued, assigned, "
            "started, paused, completed)");
  EXPECT_THAT(ErrorOf("state = Started"),
              AllOf(StartsWith("filter: column 9: "), HasSubstr("Started")));
  EXPECT_THAT(ErrorOf("state = STATE_UNSPECIFIED"),
              StartsWith("filter: column 9: "));
  EXPECT_EQ(ErrorOf("result_code = fine"),
            "filter: column 15: \"fine\" is not a result_code (ok, error, "
            "warning, cancelled, abandoned, timedout)");
  EXPECT_EQ(ErrorOf("priority >= urgent"),
            "filter: column 13: \"urgent\" is not a priority (low, "
            "belowNormal, normal, aboveNormal, high)");
  EXPECT_THAT(ErrorOf(R"(state = "")"), StartsWith("filter: column 9: "));
}

TEST(ParseFilterErrorTest, WrongLiteralType) {
  EXPECT_EQ(ErrorOf(R"(revision = "abc")"),
            R"(filter: column 12: revision takes an integer, got "abc")");
  EXPECT_THAT(ErrorOf("revision = 1.5"),
              AllOf(StartsWith("filter: column 12: "), HasSubstr("revision")));
  EXPECT_THAT(ErrorOf("revision = 99999999999999999999"),
              StartsWith("filter: column 12: "));
  EXPECT_THAT(ErrorOf(R"(revision = " 5")"), StartsWith("filter: column 12: "));
  EXPECT_THAT(ErrorOf(R"(revision = "+5")"), StartsWith("filter: column 12: "));
}

TEST(ParseFilterErrorTest, BadTimestamps) {
  for (const char* bad :
       {"yesterday", "2026-11-01", "2026-11-01T00:00:00",
        "2026-13-01T00:00:00Z", "2026-11-31T00:00:00Z", "infinite-future",
        "infinite-past", "10000-01-01T00:00:00Z", "0000-12-31T23:59:59Z"}) {
    EXPECT_THAT(ErrorOf(absl::StrCat("enqueuedAt > \"", bad, "\"")),
                AllOf(StartsWith("filter: column 14: "), HasSubstr(bad)))
        << bad;
  }
  EXPECT_TRUE(ParseFilter(R"(enqueuedAt > "0001-01-01T00:00:00Z")").ok());
  EXPECT_TRUE(
      ParseFilter(R"(enqueuedAt < "9999-12-31T23:59:59.999999Z")").ok());
}

TEST(ParseFilterErrorTest, Parentheses) {
  EXPECT_EQ(ErrorOf("(type = a"),
            "filter: column 1: unbalanced parenthesis: '(' is never closed");
  EXPECT_EQ(ErrorOf("type = a AND ((state = started)"),
            "filter: column 14: unbalanced parenthesis: '(' is never closed");
  EXPECT_EQ(ErrorOf("type = a)"),
            "filter: column 9: unbalanced parenthesis: ')' without '('");
  EXPECT_EQ(ErrorOf(")"),
            "filter: column 1: unbalanced parenthesis: ')' without '('");
  EXPECT_EQ(ErrorOf("type = a AND ()"), "filter: column 14: empty parentheses");
  EXPECT_EQ(ErrorOf("( )"), "filter: column 1: empty parentheses");
  EXPECT_THAT(ErrorOf("(type = a = b)"), StartsWith("filter: column 11: "));
}

TEST(ParseFilterErrorTest, MissingPieces) {
  EXPECT_THAT(
      ErrorOf("type ="),
      AllOf(StartsWith("filter: column 7: missing value"), HasSubstr("type")));
  EXPECT_THAT(
      ErrorOf("type = AND state = started"),
      AllOf(StartsWith("filter: column 8: missing value"), HasSubstr("quote")));
  EXPECT_THAT(ErrorOf("type = )"), StartsWith("filter: column 8: "));
  EXPECT_THAT(ErrorOf("type"),
              AllOf(StartsWith("filter: column 5: expected a comparator"),
                    HasSubstr("type")));
  EXPECT_THAT(ErrorOf("type backup"), StartsWith("filter: column 6: "));
  EXPECT_THAT(ErrorOf("type:"), StartsWith("filter: column 6: expected '*'"));
  EXPECT_THAT(ErrorOf("type:x"), StartsWith("filter: column 6: expected '*'"));
  EXPECT_THAT(ErrorOf("type = a AND"),
              StartsWith("filter: column 13: expected a condition after AND"));
  EXPECT_THAT(ErrorOf("type = a OR"),
              StartsWith("filter: column 12: expected a condition after OR"));
  EXPECT_THAT(ErrorOf("NOT"),
              StartsWith("filter: column 4: expected a condition after NOT"));
  EXPECT_THAT(ErrorOf("-"),
              StartsWith("filter: column 2: expected a condition after '-'"));
  EXPECT_THAT(ErrorOf("AND type = a"),
              StartsWith("filter: column 1: expected a condition"));
  EXPECT_THAT(ErrorOf("type = a OR AND state = b"),
              StartsWith("filter: column 13: "));
}

TEST(ParseFilterErrorTest, LexicalErrors) {
  EXPECT_EQ(ErrorOf(R"(type = "backup)"),
            "filter: column 8: unterminated string");
  EXPECT_EQ(ErrorOf(R"(type = "back\)"),
            "filter: column 13: unterminated string");
  EXPECT_THAT(ErrorOf(R"(type = "a\nb")"),
              StartsWith("filter: column 10: unknown escape sequence"));
  EXPECT_THAT(ErrorOf("type = 'x'"),
              StartsWith("filter: column 8: unexpected character"));
  EXPECT_THAT(ErrorOf("type ! x"), StartsWith("filter: column 6: "));
  EXPECT_THAT(ErrorOf("type = a & state = b"),
              StartsWith("filter: column 10: unexpected character"));
  EXPECT_THAT(ErrorOf("type\xc3\xa9 = a"),
              StartsWith("filter: column 5: unexpected character"));
}

TEST(ParseFilterErrorTest, TrailingGarbage) {
  EXPECT_THAT(ErrorOf("type = a b"), StartsWith("filter: column 10: "));
  EXPECT_THAT(ErrorOf(R"(type = a "b")"),
              StartsWith("filter: column 10: unexpected string"));
  EXPECT_THAT(ErrorOf("type = a = b"), StartsWith("filter: column 10: "));
  EXPECT_THAT(ErrorOf("type = a *"), StartsWith("filter: column 10: "));
  EXPECT_THAT(ErrorOf("type = a :"), StartsWith("filter: column 10: "));
}

TEST(ParseFilterErrorTest, FirstErrorInTextWins) {
  // A lexical error later in the text must not hide an earlier parse error.
  EXPECT_THAT(ErrorOf(R"(stat = a AND type = "open)"),
              StartsWith("filter: column 1: unknown field"));
}

TEST(ParseFilterErrorTest, NestingIsBounded) {
  const Task task = SampleTask();
  std::string ok_parens =
      std::string(64, '(') + "type = backup" + std::string(64, ')');
  EXPECT_TRUE(Eval(ok_parens, task));
  std::string deep_parens =
      std::string(65, '(') + "type = backup" + std::string(65, ')');
  EXPECT_THAT(ErrorOf(deep_parens),
              AllOf(StartsWith("filter: column 65: "), HasSubstr("deeper")));

  std::string ok_nots;
  for (int i = 0; i < 64; ++i) ok_nots += "NOT ";
  EXPECT_TRUE(Eval(ok_nots + "type = backup", task));  // 64 is even
  EXPECT_THAT(ErrorOf(ok_nots + "NOT type = backup"),
              StartsWith("filter: column 257: "));
  EXPECT_THAT(ErrorOf(std::string(5000, '-') + "type = a"),
              HasSubstr("deeper"));
  EXPECT_THAT(ErrorOf(std::string(8000, '(')), HasSubstr("deeper"));
}

TEST(ParseFilterErrorTest, LengthIsBounded) {
  // A filter is fine up to the limit...
  std::string text = "type = backup OR type = \"";
  text += std::string(8192 - text.size() - 1, 'x') + "\"";
  ASSERT_EQ(text.size(), 8192u);
  EXPECT_TRUE(Eval(text, SampleTask()));
  // ...and one byte over is refused before parsing.
  EXPECT_THAT(ErrorOf(text + " "), AllOf(StartsWith("filter: column 8193: "),
                                         HasSubstr("longer than 8192")));
}

TEST(ParseFilterErrorTest, ConditionCountIsBounded) {
  std::string text;
  for (int i = 0; i < 256; ++i) text += "id:* ";
  EXPECT_TRUE(Eval(text, SampleTask()));
  // The 257th condition starts at byte 256 * 5.
  EXPECT_THAT(ErrorOf(text + "type = x"),
              AllOf(StartsWith("filter: column 1281: "),
                    HasSubstr("more than 256 conditions")));
  // The densest filter the length limit allows: 2048 conditions, no blanks.
  std::string dense;
  for (int i = 0; i < 2048; ++i) dense += "id:*";
  EXPECT_THAT(ErrorOf(dense), HasSubstr("more than 256 conditions"));
}

TEST(ParseFilterErrorTest, LongValuesAreShortenedInMessages) {
  const std::string long_value(5000, 'x');
  const std::string message = ErrorOf("state = " + long_value);
  EXPECT_THAT(message, StartsWith("filter: column 9: "));
  EXPECT_LT(message.size(), 200u);
}

TEST(MatchesTest, AndFilters) {
  EXPECT_EQ(AndFilters(nullptr, nullptr), nullptr);
  auto a = MustParse("type = backup");
  auto b = MustParse("state = started");
  EXPECT_EQ(AndFilters(a, nullptr), a);
  EXPECT_EQ(AndFilters(nullptr, b), b);
  auto both = AndFilters(a, b);
  ASSERT_NE(both, nullptr);
  EXPECT_EQ(both->kind, FilterExpr::Kind::kAnd);
  EXPECT_EQ(both->children.size(), 2u);
  Task task = SampleTask();
  EXPECT_TRUE(Matches(both.get(), task));
  task.set_state(Task::paused);
  EXPECT_FALSE(Matches(both.get(), task));
  task.set_state(Task::started);
  task.set_type("restore");
  EXPECT_FALSE(Matches(both.get(), task));

  // Conjunctions splice; the inputs are left as they were.
  auto three = AndFilters(both, MustParse("revision = 42"));
  EXPECT_EQ(three->children.size(), 3u);
  EXPECT_EQ(both->children.size(), 2u);
  // An OR operand stays one child.
  auto with_or = AndFilters(MustParse("type = a OR type = b"), a);
  EXPECT_EQ(with_or->children.size(), 2u);
  EXPECT_EQ(with_or->children[0].kind, FilterExpr::Kind::kOr);
}

TEST(MatchesTest, EqualsFilter) {
  Task task = SampleTask();
  auto tenant = EqualsFilter(TaskField::kTenantId, std::string("tenant-a"));
  EXPECT_TRUE(Matches(tenant.get(), task));
  task.set_tenant_id("tenant-b");
  EXPECT_FALSE(Matches(tenant.get(), task));
  auto state = EqualsFilter(TaskField::kState, int64_t{Task::started});
  EXPECT_TRUE(Matches(state.get(), task));
  // A value of the wrong type never matches (and does not crash).
  auto mistyped = EqualsFilter(TaskField::kState, std::string("started"));
  EXPECT_FALSE(Matches(mistyped.get(), task));
  auto scoped = AndFilters(MustParse("type = backup"), tenant);
  task.set_tenant_id("tenant-a");
  EXPECT_TRUE(Matches(scoped.get(), task));
}

TEST(MatchesTest, AgreesWithFieldValueOfForEveryField) {
  // For each field: value = own value holds, value != own value does not.
  const Task task = [] {
    Task t = SampleTask();
    t.set_result_code(Task::warning);
    *t.mutable_completed_at() = ToTimestamp(At("2026-11-03T00:00:00Z"));
    return t;
  }();
  for (const FieldInfo& info : AllTaskFields()) {
    FilterExpr expr;
    expr.kind = FilterExpr::Kind::kCompare;
    expr.field = info.field;
    expr.value = FieldValueOf(task, info.field);
    for (Comparator cmp : {Comparator::kEq, Comparator::kLe, Comparator::kGe}) {
      expr.cmp = cmp;
      EXPECT_TRUE(Matches(&expr, task)) << info.proto_name;
    }
    for (Comparator cmp : {Comparator::kNe, Comparator::kLt, Comparator::kGt}) {
      expr.cmp = cmp;
      EXPECT_FALSE(Matches(&expr, task)) << info.proto_name;
    }
  }
}

}  // namespace
TEST(RequiredValueTest, FindsAnEqualityThatEveryMatchMustHave) {
  auto required = [](std::string_view text) -> std::optional<FieldValue> {
    absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
        ParseFilter(text);
    EXPECT_TRUE(filter.ok()) << filter.status();
    return RequiredValue(filter->get(), TaskField::kTenantId);
  };
  EXPECT_EQ(required("tenant_id = \"t1\""), FieldValue(std::string("t1")));
  EXPECT_EQ(required("state = started AND (type = a AND tenant_id = t2)"),
            FieldValue(std::string("t2")));
  EXPECT_EQ(required("tenant_id = t3 state = started"),
            FieldValue(std::string("t3")));
  // Forms that do not pin the tenant, or not in a way it recognises.
  EXPECT_EQ(required(""), std::nullopt);
  EXPECT_EQ(required("state = started"), std::nullopt);
  EXPECT_EQ(required("tenant_id != t1"), std::nullopt);
  EXPECT_EQ(required("tenant_id >= t1"), std::nullopt);
  EXPECT_EQ(required("NOT tenant_id = t1"), std::nullopt);
  EXPECT_EQ(required("tenant_id = t1 OR tenant_id = t2"), std::nullopt);
  EXPECT_EQ(required("tenant_id = t1 OR tenant_id = t1"), std::nullopt);
  // A scope ANDed to a request's filter pins it.
  std::shared_ptr<const FilterExpr> scoped =
      AndFilters(*ParseFilter("state = started OR state = paused"),
                 EqualsFilter(TaskField::kTenantId, std::string("t4")));
  EXPECT_EQ(RequiredValue(scoped.get(), TaskField::kTenantId),
            FieldValue(std::string("t4")));
}

}  // namespace taskd
