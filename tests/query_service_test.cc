// ListTasks' filter, order_by and paging end to end: a real taskd server on a
// free port over a real SQLite file, spoken to through TaskClient. The
// server's clock is fake, so every timestamp below is known exactly.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "client/task_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::ListTasksRequest;
using tasks::v1::ListTasksResponse;
using tasks::v1::Task;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kTenantA[] = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
constexpr char kTenantB[] = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
constexpr char kPolicy[] = "7d3b1f2a-9c8e-4a5b-8c7d-6e5f4a3b2c1d";

// The fake clock starts here and moves one minute per call, so the n-th
// write of a test happens at Minute(n).
const absl::Time kStart = absl::FromUnixSeconds(1'793'491'200);  // 2026-11-01
std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

class QueryServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TaskServerOptions options;
    options.store.path = dir_.File("taskd.db");
    options.store.clock = &clock_;
    options.service.clock = &clock_;
    // The clock moves a minute per call: no ack timeout may void the
    // assignments of the fixture.
    options.service.default_ack_timeout = absl::ZeroDuration();
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
  }

  void TearDown() override { taskd_.Stop(absl::Seconds(1)); }

  // Advances the clock one minute, then returns `result`'s task.
  Task Must(absl::StatusOr<Task> result) {
    clock_.Advance(absl::Minutes(1));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : Task();
  }

  Task Create(const std::string& id, const std::string& type,
              const std::string& tenant, const std::string& priority) {
    Task task;
    task.set_id(id);
    task.set_type(type);
    task.set_tenant_id(tenant);
    task.set_priority(priority);
    if (type == "backup") task.set_policy_id(kPolicy);
    return Must(taskd_.client->Create(task));
  }

  // A fixed set of tasks in every state, created one minute apart (times
  // are minutes after kStart):
  //
  //   id        type         tenant pri          state      executor result
  //   enq-1     backup       A      high         enqueued   -        -
  //   enq-2     restore      B      low          enqueued   -        -
  //   asg-1     backup       A      aboveNormal  assigned   agent-7  -
  //   run-1     replication  A      normal       started    agent-1  -
  //   pau-1     backup       B      belowNormal  paused     agent-7  -
  //   ok-1      backup       A      normal       completed  agent-1  ok
  //   err-1     backup       B      high         completed  agent-7  error
  //   can-1     restore      A      normal       completed  -        cancelled
  void CreateFixture() {
    tasks_["enq-1"] = Create("enq-1", "backup", kTenantA, "high");
    tasks_["enq-2"] = Create("enq-2", "restore", kTenantB, "low");
    tasks_["asg-1"] = Create("asg-1", "backup", kTenantA, "aboveNormal");
    tasks_["run-1"] = Create("run-1", "replication", kTenantA, "normal");
    tasks_["pau-1"] = Create("pau-1", "backup", kTenantB, "belowNormal");
    tasks_["ok-1"] = Create("ok-1", "backup", kTenantA, "normal");
    tasks_["err-1"] = Create("err-1", "backup", kTenantB, "high");
    tasks_["can-1"] = Create("can-1", "restore", kTenantA, "");
    // Each assignment's lease token, which the later moves need (and which
    // only the assignment's answer carries).
    auto assign = [&](const std::string& id, const std::string& agent) {
      Task task = Must(taskd_.client->Assign(id, agent));
      std::string lease = task.lease_token();
      task.clear_lease_token();
      tasks_[id] = task;
      return lease;
    };
    assign("asg-1", "agent-7");
    std::string lease = assign("run-1", "agent-1");
    tasks_["run-1"] = Must(taskd_.client->Start("run-1", lease));
    lease = assign("pau-1", "agent-7");
    Must(taskd_.client->Start("pau-1", lease));
    tasks_["pau-1"] = Must(taskd_.client->Pause("pau-1", lease));
    lease = assign("ok-1", "agent-1");
    Must(taskd_.client->Start("ok-1", lease));
    tasks_["ok-1"] = Must(taskd_.client->Complete("ok-1", Task::ok, lease));
    lease = assign("err-1", "agent-7");
    Must(taskd_.client->Start("err-1", lease));
    tasks_["err-1"] =
        Must(taskd_.client->Complete("err-1", Task::error, lease));
    tasks_["can-1"] = Must(taskd_.client->Cancel("can-1"));
  }

  // The time of `field` of fixture task `id`, as filter text.
  std::string TimeOf(const std::string& id, const char* field) {
    const Task& task = tasks_.at(id);
    const google::protobuf::Timestamp& ts =
        std::string(field) == "enqueuedAt"    ? task.enqueued_at()
        : std::string(field) == "startedAt"   ? task.started_at()
        : std::string(field) == "completedAt" ? task.completed_at()
                                              : task.updated_at();
    return Rfc3339(absl::FromUnixSeconds(ts.seconds()));
  }

  absl::StatusOr<ListTasksResponse> Page(const std::string& filter,
                                         const std::string& order_by,
                                         int page_size,
                                         const std::string& token = "") {
    ListTasksRequest request;
    request.set_filter(filter);
    request.set_order_by(order_by);
    request.set_page_size(page_size);
    request.set_page_token(token);
    return taskd_.client->List(request);
  }

  // Every id ListTasks returns for (filter, order_by), following tokens.
  std::vector<std::string> Ids(const std::string& filter,
                               const std::string& order_by = "",
                               int page_size = 3) {
    std::vector<std::string> ids;
    std::string token;
    for (int pages = 0; pages < 1000; ++pages) {
      absl::StatusOr<ListTasksResponse> page =
          Page(filter, order_by, page_size, token);
      EXPECT_TRUE(page.ok()) << "filter " << filter << ", order_by " << order_by
                             << ": " << page.status();
      if (!page.ok()) return ids;
      for (const Task& task : page->tasks()) ids.push_back(task.id());
      token = page->next_page_token();
      if (token.empty()) return ids;
    }
    ADD_FAILURE() << "paging did not end";
    return ids;
  }

  absl::Status ListError(const std::string& filter,
                         const std::string& order_by = "") {
    absl::Status status = Page(filter, order_by, 10).status();
    EXPECT_FALSE(status.ok())
        << "filter " << filter << ", order_by " << order_by << " was accepted";
    return status;
  }

  testing::TempDir dir_;
  FakeClock clock_{kStart};
  testing::InProcessTaskd taskd_;
  std::map<std::string, Task> tasks_;
};

TEST_F(QueryServiceTest, EveryComparisonOnStrings) {
  CreateFixture();
  EXPECT_THAT(Ids(R"(type = "restore")"), ElementsAre("enq-2", "can-1"));
  EXPECT_THAT(Ids(R"(type != "backup")"),
              ElementsAre("enq-2", "run-1", "can-1"));
  // Byte order: "backup" < "replication" < "restore".
  EXPECT_THAT(Ids(R"(type < "replication")"),
              ElementsAre("enq-1", "asg-1", "pau-1", "ok-1", "err-1"));
  EXPECT_THAT(Ids(R"(type <= "replication")"),
              ElementsAre("enq-1", "asg-1", "run-1", "pau-1", "ok-1", "err-1"));
  EXPECT_THAT(Ids(R"(type > "replication")"), ElementsAre("enq-2", "can-1"));
  EXPECT_THAT(Ids(R"(type >= "replication")"),
              ElementsAre("enq-2", "run-1", "can-1"));
  EXPECT_THAT(Ids("executor_id = agent-7"),
              ElementsAre("asg-1", "pau-1", "err-1"));
}

TEST_F(QueryServiceTest, EveryComparisonOnEnumsAndRevision) {
  CreateFixture();
  // States compare by their place in the life cycle.
  EXPECT_THAT(Ids("state = started"), ElementsAre("run-1"));
  EXPECT_THAT(Ids(R"(state = "completed")"),
              ElementsAre("ok-1", "err-1", "can-1"));
  EXPECT_THAT(Ids("state != completed"),
              ElementsAre("enq-1", "enq-2", "asg-1", "run-1", "pau-1"));
  EXPECT_THAT(Ids("state < started"), ElementsAre("enq-1", "enq-2", "asg-1"));
  EXPECT_THAT(Ids("state <= started"),
              ElementsAre("enq-1", "enq-2", "asg-1", "run-1"));
  EXPECT_THAT(Ids("state > started"),
              ElementsAre("pau-1", "ok-1", "err-1", "can-1"));
  EXPECT_THAT(Ids("state >= paused"),
              ElementsAre("pau-1", "ok-1", "err-1", "can-1"));
  // Result codes: unset on every task that has not completed.
  EXPECT_THAT(Ids("result_code = error"), ElementsAre("err-1"));
  EXPECT_THAT(Ids("result_code < cancelled"), ElementsAre("ok-1", "err-1"));
  EXPECT_THAT(Ids("result_code <= ok"), ElementsAre("ok-1"));
  EXPECT_THAT(Ids("result_code >= error"), ElementsAre("err-1", "can-1"));
  // != keeps matching unset values (query/filter.h).
  EXPECT_THAT(Ids("result_code != ok"),
              ElementsAre("enq-1", "enq-2", "asg-1", "run-1", "pau-1", "err-1",
                          "can-1"));
  // revision: the last change of err-1 happened before can-1's.
  const int64_t revision = tasks_["err-1"].revision();
  EXPECT_THAT(Ids(absl::StrCat("revision = ", revision)), ElementsAre("err-1"));
  EXPECT_THAT(Ids(absl::StrCat("revision > \"", revision, "\"")),
              ElementsAre("can-1"));
  EXPECT_THAT(Ids(absl::StrCat("revision >= ", revision)),
              ElementsAre("err-1", "can-1"));
}

TEST_F(QueryServiceTest, PriorityComparesAndOrdersByRank) {
  CreateFixture();
  // Alphabetically "aboveNormal" < "high" < "low" < "normal"; by rank
  // low < belowNormal < normal < aboveNormal < high.
  EXPECT_THAT(Ids(R"(priority >= "aboveNormal")"),
              ElementsAre("enq-1", "asg-1", "err-1"));
  EXPECT_THAT(Ids("priority > normal"), ElementsAre("enq-1", "asg-1", "err-1"));
  EXPECT_THAT(Ids("priority < normal"), ElementsAre("enq-2", "pau-1"));
  EXPECT_THAT(Ids("priority <= belowNormal"), ElementsAre("enq-2", "pau-1"));
  EXPECT_THAT(Ids("priority = normal"), ElementsAre("run-1", "ok-1", "can-1"));
  EXPECT_THAT(Ids("priority != normal"),
              ElementsAre("enq-1", "enq-2", "asg-1", "pau-1", "err-1"));
  EXPECT_THAT(Ids("", "priority desc"),
              ElementsAre("enq-1", "err-1", "asg-1", "can-1", "ok-1", "run-1",
                          "pau-1", "enq-2"));
  EXPECT_THAT(Ids("", "priority, id desc"),
              ElementsAre("enq-2", "pau-1", "run-1", "ok-1", "can-1", "asg-1",
                          "err-1", "enq-1"));
}

TEST_F(QueryServiceTest, LogicalOperatorsAndParentheses) {
  CreateFixture();
  EXPECT_THAT(Ids("type = backup AND tenant_id = " + std::string(kTenantA)),
              ElementsAre("enq-1", "asg-1", "ok-1"));
  // Juxtaposition is AND.
  EXPECT_THAT(Ids("type = backup state = completed"),
              ElementsAre("ok-1", "err-1"));
  EXPECT_THAT(Ids("state = started OR state = paused"),
              ElementsAre("run-1", "pau-1"));
  EXPECT_THAT(Ids("NOT type = backup"), ElementsAre("enq-2", "run-1", "can-1"));
  EXPECT_THAT(Ids("-type = backup"), ElementsAre("enq-2", "run-1", "can-1"));
  EXPECT_THAT(Ids("NOT (type = backup OR type = restore)"),
              ElementsAre("run-1"));
  EXPECT_THAT(Ids("-(state = completed) AND -executor_id:*"),
              ElementsAre("enq-1", "enq-2"));
  // AIP-160 precedence: OR binds tighter than AND...
  EXPECT_THAT(Ids("type = restore AND state = enqueued OR state = completed"),
              ElementsAre("enq-2", "can-1"));
  // ...so this is type = restore AND (...), not (...) OR state = completed.
  EXPECT_THAT(Ids("(type = restore AND state = enqueued) OR state = completed"),
              ElementsAre("enq-2", "ok-1", "err-1", "can-1"));
  // NOT binds tighter than OR.
  EXPECT_THAT(
      Ids("NOT state = completed OR result_code = error"),
      ElementsAre("enq-1", "enq-2", "asg-1", "run-1", "pau-1", "err-1"));
  EXPECT_THAT(Ids("((type = backup) AND (NOT (priority = high)))"),
              ElementsAre("asg-1", "pau-1", "ok-1"));
}

TEST_F(QueryServiceTest, Presence) {
  CreateFixture();
  EXPECT_THAT(Ids("executor_id:*"),
              ElementsAre("asg-1", "run-1", "pau-1", "ok-1", "err-1"));
  EXPECT_THAT(Ids("NOT executor_id:*"), ElementsAre("enq-1", "enq-2", "can-1"));
  EXPECT_THAT(Ids("startedAt:*"),
              ElementsAre("run-1", "pau-1", "ok-1", "err-1"));
  EXPECT_THAT(Ids("completed_at:*"), ElementsAre("ok-1", "err-1", "can-1"));
  EXPECT_THAT(Ids("result_code:*"), ElementsAre("ok-1", "err-1", "can-1"));
  EXPECT_THAT(Ids("policy_id:* AND NOT completedAt:*"),
              ElementsAre("enq-1", "asg-1", "pau-1"));
}

TEST_F(QueryServiceTest, TimestampRanges) {
  CreateFixture();
  // Tasks were enqueued at minutes 0..7 after kStart.
  const std::string from = Rfc3339(kStart + absl::Minutes(2));
  const std::string to = Rfc3339(kStart + absl::Minutes(5));
  EXPECT_THAT(Ids(absl::StrCat("enqueuedAt >= \"", from,
                               "\" AND enqueuedAt < \"", to, "\"")),
              ElementsAre("asg-1", "run-1", "pau-1"));
  EXPECT_THAT(Ids(absl::StrCat("enqueuedAt > \"", from,
                               "\" AND enqueuedAt <= \"", to, "\"")),
              ElementsAre("run-1", "pau-1", "ok-1"));
  EXPECT_THAT(Ids(absl::StrCat("enqueuedAt = \"", from, "\"")),
              ElementsAre("asg-1"));
  // The same instant in another zone.
  EXPECT_THAT(Ids(absl::StrCat("enqueuedAt = \"",
                               absl::FormatTime(absl::RFC3339_full,
                                                kStart + absl::Minutes(2),
                                                absl::FixedTimeZone(-5 * 3600)),
                               "\"")),
              ElementsAre("asg-1"));

  // Completion windows: err-1 completed after ok-1, can-1 last.
  const std::string err_done = TimeOf("err-1", "completedAt");
  EXPECT_THAT(Ids(absl::StrCat("completedAt >= \"", err_done, "\"")),
              ElementsAre("err-1", "can-1"));
  EXPECT_THAT(Ids(absl::StrCat("completedAt = \"", err_done, "\"")),
              ElementsAre("err-1"));
  // A task that never completed is not "completed before" anything...
  EXPECT_THAT(Ids(absl::StrCat("completedAt < \"", err_done, "\"")),
              ElementsAre("ok-1"));
  EXPECT_THAT(Ids(absl::StrCat("completedAt <= \"", err_done, "\"")),
              ElementsAre("ok-1", "err-1"));
  EXPECT_THAT(Ids("completedAt < \"9999-12-31T23:59:59Z\""),
              ElementsAre("ok-1", "err-1", "can-1"));
  EXPECT_THAT(Ids("startedAt > \"0001-01-01T00:00:00Z\""),
              ElementsAre("run-1", "pau-1", "ok-1", "err-1"));
  // ...but != and NOT do match unset timestamps.
  EXPECT_THAT(Ids(absl::StrCat("completedAt != \"", err_done, "\"")),
              ElementsAre("enq-1", "enq-2", "asg-1", "run-1", "pau-1", "ok-1",
                          "can-1"));
  EXPECT_THAT(Ids(absl::StrCat("NOT completedAt >= \"", err_done, "\"")),
              ElementsAre("enq-1", "enq-2", "asg-1", "run-1", "pau-1", "ok-1"));
  // updatedAt moves with every change: the last three changes.
  EXPECT_THAT(
      Ids(absl::StrCat("updatedAt >= \"", TimeOf("ok-1", "updatedAt"), "\"")),
      ElementsAre("ok-1", "err-1", "can-1"));
}

TEST_F(QueryServiceTest, JsonAndProtoNamesMeanTheSame) {
  CreateFixture();
  const std::string t = TimeOf("run-1", "startedAt");
  EXPECT_EQ(Ids(absl::StrCat("startedAt >= \"", t, "\"")),
            Ids(absl::StrCat("started_at >= \"", t, "\"")));
  EXPECT_EQ(Ids("completedAt:*"), Ids("completed_at:*"));
  EXPECT_EQ(Ids("", "enqueuedAt desc"), Ids("", "enqueued_at desc"));
  EXPECT_EQ(Ids("", "updatedAt, completedAt"),
            Ids("", "updated_at, completed_at"));
  EXPECT_THAT(Ids("", "completedAt desc"),
              ElementsAre("can-1", "err-1", "ok-1", "asg-1", "enq-1", "enq-2",
                          "pau-1", "run-1"));
}

TEST_F(QueryServiceTest, OrderByAscAndDesc) {
  CreateFixture();
  const std::vector<std::string> by_enqueued = {
      "enq-1", "enq-2", "asg-1", "run-1", "pau-1", "ok-1", "err-1", "can-1"};
  EXPECT_EQ(Ids(""), by_enqueued);
  EXPECT_EQ(Ids("", "enqueuedAt"), by_enqueued);
  EXPECT_EQ(Ids("", "enqueuedAt asc"), by_enqueued);
  EXPECT_EQ(Ids("", "enqueuedAt desc"),
            std::vector<std::string>(by_enqueued.rbegin(), by_enqueued.rend()));
  EXPECT_THAT(Ids("", "id"), ElementsAre("asg-1", "can-1", "enq-1", "enq-2",
                                         "err-1", "ok-1", "pau-1", "run-1"));
  EXPECT_THAT(Ids("", "id desc"),
              ElementsAre("run-1", "pau-1", "ok-1", "err-1", "enq-2", "enq-1",
                          "can-1", "asg-1"));
  // Ties on the first key fall back to id ascending.
  EXPECT_THAT(Ids("", "type desc"),
              ElementsAre("can-1", "enq-2", "run-1", "asg-1", "enq-1", "err-1",
                          "ok-1", "pau-1"));
  EXPECT_THAT(Ids("", "state desc, enqueuedAt desc"),
              ElementsAre("can-1", "err-1", "ok-1", "pau-1", "run-1", "asg-1",
                          "enq-2", "enq-1"));
  EXPECT_THAT(Ids("state != completed", "startedAt desc, id"),
              ElementsAre("pau-1", "run-1", "asg-1", "enq-1", "enq-2"));
}

TEST_F(QueryServiceTest, PagingUnderAFilter) {
  // 60 tasks of three types, interleaved.
  std::vector<std::string> backups;
  for (int i = 0; i < 60; ++i) {
    const char* type = i % 3 == 0 ? "backup" : (i % 3 == 1 ? "restore" : "x");
    Task task = Create(absl::StrCat("p-", 100 + i), type, kTenantA,
                       i % 2 ? "high" : "low");
    if (i % 3 == 0 && i % 2 == 1) backups.push_back(task.id());
  }
  const std::string filter = "type = backup AND priority = high";
  for (int page_size : {1, 3, 4, 10, 0}) {
    EXPECT_EQ(Ids(filter, "", page_size), backups) << page_size;
  }
  EXPECT_EQ(Ids(filter, "enqueuedAt desc", 4),
            std::vector<std::string>(backups.rbegin(), backups.rend()));
  // A full page ends the list only when nothing follows.
  absl::StatusOr<ListTasksResponse> page =
      Page(filter, "", static_cast<int>(backups.size()));
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->tasks_size(), static_cast<int>(backups.size()));
  EXPECT_THAT(page->next_page_token(), IsEmpty());
  // A filter nothing matches gives one empty page and no token.
  page = Page("type = nothing", "", 5);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->tasks_size(), 0);
  EXPECT_THAT(page->next_page_token(), IsEmpty());
}

TEST_F(QueryServiceTest, PageTokenIsBoundToFilterAndOrder) {
  CreateFixture();
  const std::string filter = "type = backup";
  absl::StatusOr<ListTasksResponse> first = Page(filter, "enqueuedAt", 2);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string token = first->next_page_token();
  ASSERT_FALSE(token.empty());
  // With the same query the token continues.
  absl::StatusOr<ListTasksResponse> second =
      Page(filter, "enqueued_at asc", 2, token);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->tasks(0).id(), "pau-1");
  // With another filter or order it is refused.
  for (const auto& [other_filter, other_order] :
       std::vector<std::pair<std::string, std::string>>{
           {"type = restore", "enqueuedAt"},
           {"", "enqueuedAt"},
           {filter, "enqueuedAt desc"},
           {filter, "id"},
           {filter, "enqueuedAt, id desc"}}) {
    absl::Status status = Page(other_filter, other_order, 2, token).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << other_filter << " / " << other_order << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr("page_token"));
  }
}

TEST_F(QueryServiceTest, BadFiltersNameTheColumn) {
  CreateFixture();
  for (const char* filter : {
           "stat = started",                      // unknown field
           "state = begun",                       // not a state
           "result_code = fine",                  // not a result code
           "priority >= urgent",                  // not a priority
           "completedAt > \"yesterday\"",         // not a timestamp
           "revision = abc",                      // not an integer
           "(type = backup",                      // unbalanced
           "type = backup)",                      // unbalanced
           "type = backup AND",                   // dangling operator
           "type = \"backup",                     // unterminated string
           "type ~ backup",                       // unknown operator
           "type = backup and state = enqueued",  // lower-case keyword
           "etag = r1",                           // not queryable
       }) {
    absl::Status status = ListError(filter);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << filter << ": " << status;
    EXPECT_THAT(status.message(),
                AllOf(HasSubstr("filter"), HasSubstr("column")))
        << filter;
  }
  absl::Status status = ListError("state = started AND stat = x");
  EXPECT_EQ(status.message(), "filter: column 21: unknown field \"stat\"");
  // The limits.
  EXPECT_THAT(ListError(std::string(8193, ' ') + "id:*").message(),
              AllOf(HasSubstr("column"), HasSubstr("8192")));
  EXPECT_THAT(
      ListError(std::string(65, '(') + "id:*" + std::string(65, ')')).message(),
      AllOf(HasSubstr("column"), HasSubstr("deeper")));
}

TEST_F(QueryServiceTest, BadOrdersNameTheColumn) {
  CreateFixture();
  for (const char* order_by : {"stat", "policy_id", "enqueuedAt sideways",
                               "type, type", "type,", "type desc id"}) {
    absl::Status status = ListError("", order_by);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << order_by << ": " << status;
    EXPECT_THAT(status.message(),
                AllOf(HasSubstr("order_by"), HasSubstr("column")))
        << order_by;
  }
}

}  // namespace
}  // namespace taskd
