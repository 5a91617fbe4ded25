// Issue 13's counts over a real server: CountTasks, WatchTaskCounts (exact
// at every revision it reports, coalesced per min_interval on the injected
// clock), WatchTasks' include_previous and ListTasks' revision.
#include <grpcpp/client_context.h>

#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "base/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::CountTasksRequest;
using tasks::v1::CountTasksResponse;
using tasks::v1::TaskEvent;
using tasks::v1::WatchTaskCountsRequest;
using tasks::v1::WatchTaskCountsResponse;
using tasks::v1::WatchTasksRequest;
using tasks::v1::WatchTasksResponse;
using ::testing::HasSubstr;

constexpr char kT1[] = "11111111-1111-4111-8111-111111111111";
constexpr char kT2[] = "22222222-2222-4222-8222-222222222222";

// Counts as "value,value" -> n, the form both sides are compared in.
using Counts = std::map<std::string, int64_t>;

template <typename Response>
Counts CountsOf(const Response& response) {
  Counts counts;
  for (const tasks::v1::TaskCount& group : response.groups()) {
    counts[absl::StrJoin(group.values(), ",")] = group.count();
  }
  return counts;
}

class CountsTest : public ::testing::Test {
 protected:
  void Start(Clock* clock = nullptr) {
    testing::InProcessTaskd::Options options;
    options.server.store.path = dir_.File("taskd.db");
    options.server.store.synchronous_full = false;
    options.server.store.history_max_changes = 1'000'000;
    options.server.clock = clock;
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
    stub_ = tasks::v1::TaskService::NewStub(taskd_.channel);
  }
  void TearDown() override { taskd_.Stop(absl::Seconds(2)); }

  Task Create(const std::string& type, const std::string& tenant = "") {
    Task task;
    task.set_type(type);
    task.set_tenant_id(tenant);
    absl::StatusOr<Task> created = taskd_.client->Create(task);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : Task();
  }

  absl::StatusOr<CountTasksResponse> Count(
      const std::string& filter, const std::vector<std::string>& group_by) {
    CountTasksRequest request;
    request.set_filter(filter);
    for (const std::string& field : group_by) request.add_group_by(field);
    CountTasksResponse response;
    grpc::ClientContext context;
    grpc::Status status = stub_->CountTasks(&context, request, &response);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          status.error_message());
    }
    return response;
  }

  testing::TempDir dir_;
  // Outlives the server that may read it.
  FakeClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  testing::InProcessTaskd taskd_;
  std::unique_ptr<tasks::v1::TaskService::Stub> stub_;
};

TEST_F(CountsTest, CountTasksGroupsByOneOrTwoFields) {
  Start();
  Create("backup", kT1);
  Create("backup", kT2);
  Task done = Create("restore", kT1);
  absl::StatusOr<Task> assigned = taskd_.client->Assign(done.id(), "agent-1");
  ASSERT_TRUE(assigned.ok()) << assigned.status();
  ASSERT_TRUE(
      taskd_.client->Complete(done.id(), Task::error, assigned->lease_token())
          .ok());

  absl::StatusOr<CountTasksResponse> by_state = Count("", {"state"});
  ASSERT_TRUE(by_state.ok()) << by_state.status();
  EXPECT_EQ(CountsOf(*by_state), (Counts{{"enqueued", 2}, {"completed", 1}}));
  EXPECT_EQ(by_state->revision(), taskd_.server->store()->CurrentRevision());
  // Groups come in life-cycle order, not by name.
  EXPECT_EQ(by_state->groups(0).values(0), "enqueued");

  absl::StatusOr<CountTasksResponse> two =
      Count(absl::StrCat("tenant_id = ", kT1), {"state", "result_code"});
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(CountsOf(*two), (Counts{{"enqueued,", 1}, {"completed,error", 1}}));

  absl::StatusOr<CountTasksResponse> by_type =
      Count("state = enqueued", {"type", "tenant_id"});
  ASSERT_TRUE(by_type.ok()) << by_type.status();
  EXPECT_EQ(CountsOf(*by_type), (Counts{{absl::StrCat("backup,", kT1), 1},
                                        {absl::StrCat("backup,", kT2), 1}}));

  absl::StatusOr<CountTasksResponse> total = Count("", {});
  ASSERT_TRUE(total.ok());
  EXPECT_EQ(CountsOf(*total), (Counts{{"", 3}}));
  absl::StatusOr<CountTasksResponse> none = Count("type = nothing", {});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->groups_size(), 0);
}

TEST_F(CountsTest, BadQuestionsNameTheField) {
  Start();
  absl::StatusOr<CountTasksResponse> unknown = Count("", {"state", "colour"});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("group_by[1]"));
  absl::StatusOr<CountTasksResponse> three =
      Count("", {"state", "type", "priority"});
  EXPECT_EQ(three.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(three.status().message(), HasSubstr("group_by"));
  absl::StatusOr<CountTasksResponse> filter = Count("stat = 1", {"state"});
  EXPECT_EQ(filter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(filter.status().message(), HasSubstr("filter: column 1"));

  WatchTaskCountsRequest request;
  request.add_group_by("id");
  grpc::ClientContext context;
  auto reader = stub_->WatchTaskCounts(&context, request);
  WatchTaskCountsResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("group_by[0]"));
}

TEST_F(CountsTest, ListTasksTellsTheRevisionOfItsSnapshot) {
  Start();
  Create("backup");
  Create("backup");
  tasks::v1::ListTasksRequest request;
  absl::StatusOr<tasks::v1::ListTasksResponse> page =
      taskd_.client->List(request);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->revision(), 2);
}

TEST_F(CountsTest, WatchTasksIncludesThePreviousTaskOnlyWhenAsked) {
  Start();
  Task task = Create("backup");
  ASSERT_TRUE(taskd_.client->Assign(task.id(), "agent-1").ok());
  for (bool include : {false, true}) {
    SCOPED_TRACE(include ? "include_previous" : "without");
    WatchTasksRequest request;
    request.set_start_revision(1);
    request.set_include_previous(include);
    grpc::ClientContext context;
    auto reader = stub_->WatchTasks(&context, request);
    std::vector<TaskEvent> events;
    WatchTasksResponse response;
    while (events.size() < 2 && reader->Read(&response)) {
      for (const TaskEvent& event : response.events()) events.push_back(event);
    }
    context.TryCancel();
    reader->Finish();
    ASSERT_EQ(events.size(), 2u);
    EXPECT_FALSE(events[0].has_previous());  // created: nothing before
    EXPECT_EQ(events[1].task().state(), Task::assigned);
    EXPECT_EQ(events[1].has_previous(), include);
    if (include) {
      EXPECT_EQ(events[1].previous().state(), Task::enqueued);
      EXPECT_EQ(events[1].previous().revision(), 1);
    }
  }
}

// The streamed counts against the history: every response must equal the
// counts obtained by replaying every change up to its revision, whatever
// the writers were doing while it was computed.
TEST_F(CountsTest, StreamedCountsAreExactAtTheirRevisions) {
  Start();
  for (int i = 0; i < 20; ++i) Create(i % 2 ? "backup" : "restore", kT1);
  const std::string filter = absl::StrCat("type = backup OR tenant_id = ", kT2);

  WatchTaskCountsRequest request;
  request.set_filter(filter);
  request.add_group_by("state");
  request.add_group_by("result_code");
  request.mutable_min_interval()->set_nanos(100'000'000);
  grpc::ClientContext context;
  auto reader = stub_->WatchTaskCounts(&context, request);
  absl::Mutex mu;
  std::vector<WatchTaskCountsResponse> streamed;
  std::thread read([&] {
    WatchTaskCountsResponse response;
    while (reader->Read(&response)) {
      absl::MutexLock lock(&mu);
      streamed.push_back(response);
    }
  });

  // Two writers: creates, moves through the life cycle, deletions.
  auto work = [this](int seed) {
    std::mt19937 rng(seed);
    for (int i = 0; i < 60; ++i) {
      Task task = Create(rng() % 2 ? "backup" : "other", rng() % 2 ? kT1 : kT2);
      if (rng() % 3 == 0) continue;
      absl::StatusOr<Task> assigned = taskd_.client->Assign(task.id(), "agent");
      if (!assigned.ok()) continue;
      if (rng() % 4 == 0) {
        (void)taskd_.client->Delete(task.id());
        continue;
      }
      (void)taskd_.client->Complete(task.id(),
                                    rng() % 2 ? Task::ok : Task::warning,
                                    assigned->lease_token());
    }
  };
  std::thread a(work, 1), b(work, 2);
  a.join();
  b.join();
  const int64_t last = taskd_.server->store()->CurrentRevision();
  absl::StatusOr<CountTasksResponse> final_count =
      Count(filter, {"state", "result_code"});
  ASSERT_TRUE(final_count.ok());
  ASSERT_EQ(final_count->revision(), last);
  {
    // The stream catches up with the last change that moved its counts.
    absl::MutexLock lock(&mu);
    auto caught_up = [&] {
      return !streamed.empty() &&
             CountsOf(streamed.back()) == CountsOf(*final_count);
    };
    mu.AwaitWithTimeout(absl::Condition(&caught_up), absl::Seconds(10));
  }
  context.TryCancel();
  read.join();
  reader->Finish();

  // The history, replayed: the counts at each revision.
  absl::StatusOr<std::vector<Change>> history =
      taskd_.server->store()->ReadChanges(1, 1'000'000);
  ASSERT_TRUE(history.ok()) << history.status();
  absl::StatusOr<std::shared_ptr<const FilterExpr>> parsed =
      ParseFilter(filter);
  ASSERT_TRUE(parsed.ok());
  TaskCounts replay({TaskField::kState, TaskField::kResultCode});
  std::map<int64_t, Counts> at_revision;
  auto snapshot = [&] {
    Counts counts;
    for (const auto& [key, n] : replay.groups()) {
      counts[absl::StrCat(GroupValueText(TaskField::kState, key[0]), ",",
                          GroupValueText(TaskField::kResultCode, key[1]))] = n;
    }
    return counts;
  };
  at_revision[0] = snapshot();
  for (const Change& change : *history) {
    if (change.previous.has_value() &&
        Matches(parsed->get(), *change.previous)) {
      replay.Add(*change.previous, -1);
    }
    if (change.kind != Change::Kind::kDeleted &&
        Matches(parsed->get(), change.task)) {
      replay.Add(change.task, +1);
    }
    at_revision[change.revision] = snapshot();
  }
  ASSERT_GE(streamed.size(), 2u);
  int64_t previous_revision = -1;
  for (const WatchTaskCountsResponse& response : streamed) {
    SCOPED_TRACE(absl::StrCat("response at revision ", response.revision()));
    ASSERT_EQ(at_revision.count(response.revision()), 1u);
    EXPECT_EQ(CountsOf(response), at_revision[response.revision()]);
    EXPECT_GT(response.revision(), previous_revision);
    previous_revision = response.revision();
  }
  EXPECT_EQ(CountsOf(streamed.back()), CountsOf(*final_count));
}

// min_interval on the server's clock: a burst of changes becomes one
// response once the interval has passed, with what was created meanwhile.
TEST_F(CountsTest, ChangesWithinTheIntervalAreCoalesced) {
  Start(&clock_);
  Create("backup");
  WatchTaskCountsRequest request;
  request.add_group_by("state");
  request.mutable_min_interval()->set_seconds(10);
  grpc::ClientContext context;
  auto reader = stub_->WatchTaskCounts(&context, request);
  WatchTaskCountsResponse first;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_EQ(CountsOf(first), (Counts{{"enqueued", 1}}));
  EXPECT_EQ(first.created(), 0);

  absl::Mutex mu;
  std::vector<WatchTaskCountsResponse> later;
  std::thread read([&] {
    WatchTaskCountsResponse response;
    while (reader->Read(&response)) {
      absl::MutexLock lock(&mu);
      later.push_back(response);
    }
  });
  for (int i = 0; i < 5; ++i) Create("backup");
  // Not before the interval: give the hub many ticks of real time.
  absl::SleepFor(absl::Milliseconds(300));
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(later.empty()) << "sent within min_interval";
  }
  clock_.Advance(absl::Seconds(10));
  {
    absl::MutexLock lock(&mu);
    auto one = [&] { return !later.empty(); };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&one), absl::Seconds(10)));
    EXPECT_EQ(later.size(), 1u);
    EXPECT_EQ(CountsOf(later[0]), (Counts{{"enqueued", 6}}));
    EXPECT_EQ(later[0].created(), 5);
    EXPECT_EQ(later[0].revision(), 6);
  }
  context.TryCancel();
  read.join();
  reader->Finish();
}

// Streams asking the same question share one view; a view goes when its
// last stream does.
TEST_F(CountsTest, SameQuestionSharesOneView) {
  Start();
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<WatchTaskCountsResponse>>>
      readers;
  for (const char* filter : {"type = a", "type = a", "type = b"}) {
    WatchTaskCountsRequest request;
    request.set_filter(filter);
    request.add_group_by("state");
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(stub_->WatchTaskCounts(contexts.back().get(), request));
    WatchTaskCountsResponse response;
    ASSERT_TRUE(readers.back()->Read(&response));
  }
  CountHub* hub = taskd_.server->count_hub();
  EXPECT_EQ(hub->open_streams(), 3u);
  EXPECT_EQ(hub->open_views(), 2u);
  for (auto& context : contexts) context->TryCancel();
  for (auto& reader : readers) reader->Finish();
  for (int i = 0; i < 200 && hub->open_streams() > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(hub->open_streams(), 0u);
  EXPECT_EQ(hub->open_views(), 0u);
}

}  // namespace
}  // namespace taskd
