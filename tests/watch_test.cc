// WatchTasks through a real server: order, gaps, resume, the initial-state
// seam, compaction, filters, progress, fan-out, stalled readers, shutdown.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_callback.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/error_details.h"
#include "client/task_client.h"
#include "client/task_watch.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::TaskEvent;
using tasks::v1::WatchTasksRequest;
using tasks::v1::WatchTasksResponse;
using ::testing::HasSubstr;

// Every event's revision is one more than the one before, from `first`.
void ExpectConsecutive(const std::vector<TaskEvent>& events, int64_t first);

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::InProcessTaskd::Options options;
    options.server.store.path = dir_.File("taskd.db");
    // Commits need not survive power loss here; the watch logic is the same.
    options.server.store.synchronous_full = false;
    options.server.store.history_max_changes = 1'000'000;
    options.server.store.history_trim_interval = 1;
    options.server.watch.ring_capacity = 8192;
    // Each channel a connection of its own, not shared with other channels.
    options.channel_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
  }
  void TearDown() override { taskd_.Stop(absl::Seconds(2)); }

  // The same port and database, with what options() says now.
  void Restart() {
    absl::Status restarted = taskd_.Restart();
    ASSERT_TRUE(restarted.ok()) << restarted;
  }
  TaskStore* store() { return taskd_.server->store(); }

  Task Create(const std::string& type = "backup") {
    Task task;
    task.set_type(type);
    absl::StatusOr<Task> created = taskd_.client->Create(task);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : Task();
  }

  // Opens a watch and reads until `until(responses)` holds or the stream
  // ends; returns the status if it ended.
  struct Stream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<WatchTasksResponse>> reader;
  };
  std::unique_ptr<Stream> Open(
      const WatchTasksRequest& request,
      std::shared_ptr<grpc::Channel> channel = nullptr) {
    auto stream = std::make_unique<Stream>();
    auto stub =
        tasks::v1::TaskService::NewStub(channel ? channel : taskd_.channel);
    stream->context.set_deadline(
        absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stream->reader = stub->WatchTasks(&stream->context, request);
    return stream;
  }

  // Reads events until one with revision >= `revision` arrived.
  std::vector<TaskEvent> ReadUntil(Stream* stream, int64_t revision) {
    std::vector<TaskEvent> events;
    WatchTasksResponse response;
    while (stream->reader->Read(&response)) {
      for (const TaskEvent& e : response.events()) events.push_back(e);
      if (response.revision() >= revision) break;
    }
    return events;
  }

  // TenantRoutedWatchers* below.
  void CheckTenantRouting() {
    const std::string kA = "00000000-0000-4000-8000-00000000000a";
    const std::string kB = "00000000-0000-4000-8000-00000000000b";
    const std::string kQuiet = "00000000-0000-4000-8000-00000000000c";
    auto watch = [&](const std::string& filter, int64_t start) {
      WatchTasksRequest request;
      request.set_filter(filter);
      request.set_start_revision(start);
      request.mutable_progress_interval()->set_nanos(100'000'000);
      return Open(request, taskd_.NewChannel());
    };
    auto all = watch("", 1);
    auto a = watch(absl::StrCat("tenant_id = \"", kA, "\""), 1);
    auto a_backups =
        watch(absl::StrCat("type = backup AND tenant_id = \"", kA, "\""), 1);
    auto b = watch(absl::StrCat("tenant_id = \"", kB, "\""), 1);
    auto quiet = watch(absl::StrCat("tenant_id = \"", kQuiet, "\""), 1);

    std::vector<std::thread> writers;
    for (int w = 0; w < 3; ++w) {
      writers.emplace_back([&, w] {
        for (int i = 0; i < 30; ++i) {
          Task task;
          task.set_type((i + w) % 3 == 0 ? "replication" : "backup");
          task.set_tenant_id((i * 7 + w) % 5 < 2 ? kA : kB);
          absl::StatusOr<Task> created = taskd_.client->Create(task);
          ASSERT_TRUE(created.ok()) << created.status();
          if (i % 2 == 0) {
            ASSERT_TRUE(taskd_.client->Assign(created->id(), "agent").ok());
          }
        }
      });
    }
    for (auto& t : writers) t.join();
    const int64_t last = store()->CurrentRevision();

    std::vector<TaskEvent> everything = ReadUntil(all.get(), last);
    ExpectConsecutive(everything, 1);
    auto revisions = [](const std::vector<TaskEvent>& events, auto keep) {
      std::vector<int64_t> out;
      for (const TaskEvent& e : events) {
        if (keep(e)) out.push_back(e.revision());
      }
      return out;
    };
    auto of = [](const std::string& tenant) {
      return [tenant](const TaskEvent& e) {
        return e.task().tenant_id() == tenant;
      };
    };
    auto any = [](const TaskEvent&) { return true; };
    std::vector<int64_t> want_a = revisions(everything, of(kA));
    std::vector<int64_t> want_b = revisions(everything, of(kB));
    std::vector<int64_t> want_a_backups =
        revisions(everything, [&](const TaskEvent& e) {
          return e.task().tenant_id() == kA && e.task().type() == "backup";
        });
    ASSERT_FALSE(want_a.empty());
    ASSERT_FALSE(want_b.empty());
    EXPECT_EQ(revisions(ReadUntil(a.get(), last), any), want_a);
    EXPECT_EQ(revisions(ReadUntil(a_backups.get(), last), any), want_a_backups);
    EXPECT_EQ(revisions(ReadUntil(b.get(), last), any), want_b);
    EXPECT_TRUE(ReadUntil(quiet.get(), last).empty());

    // Resuming mid-way, from the ring and from before it was filled.
    const int64_t middle = want_a[want_a.size() / 2];
    std::vector<int64_t> want_a_from_middle(
        std::find(want_a.begin(), want_a.end(), middle), want_a.end());
    auto resumed = watch(absl::StrCat("tenant_id = \"", kA, "\""), middle);
    EXPECT_EQ(revisions(ReadUntil(resumed.get(), last), any),
              want_a_from_middle);

    // Live again after the resume: one more change in each tenant.
    Task more;
    more.set_type("backup");
    more.set_tenant_id(kB);
    ASSERT_TRUE(taskd_.client->Create(more).ok());
    more.set_tenant_id(kA);
    absl::StatusOr<Task> in_a = taskd_.client->Create(more);
    ASSERT_TRUE(in_a.ok());
    std::vector<TaskEvent> tail = ReadUntil(resumed.get(), in_a->revision());
    ASSERT_EQ(tail.size(), 1u);
    EXPECT_EQ(tail[0].revision(), in_a->revision());
  }

  testing::TempDir dir_;
  testing::InProcessTaskd taskd_;
};

void ExpectConsecutive(const std::vector<TaskEvent>& events, int64_t first) {
  for (size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(events[i].revision(), first + static_cast<int64_t>(i))
        << "gap or repeat at event " << i;
    EXPECT_EQ(events[i].task().revision(), events[i].revision());
  }
}

TEST_F(WatchTest, OrderedWithoutGapsUnderConcurrentWriters) {
  WatchTasksRequest request;
  request.set_start_revision(1);
  auto stream = Open(request);
  constexpr int kWriters = 4, kEach = 60;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&] {
      for (int i = 0; i < kEach / 3; ++i) {
        Task t = Create();
        ASSERT_TRUE(taskd_.client->Assign(t.id(), "agent").ok());
        ASSERT_TRUE(taskd_.client->Cancel(t.id(), "", /*force=*/true).ok());
      }
    });
  }
  for (auto& t : writers) t.join();
  int64_t last = store()->CurrentRevision();
  ASSERT_EQ(last, kWriters * kEach);
  std::vector<TaskEvent> events = ReadUntil(stream.get(), last);
  ASSERT_EQ(static_cast<int64_t>(events.size()), last);
  ExpectConsecutive(events, 1);
  // Per task: CREATED, then UPDATED (assigned), then UPDATED (completed).
  std::map<std::string, std::vector<TaskEvent::Type>> per_task;
  for (const TaskEvent& e : events) per_task[e.task().id()].push_back(e.type());
  for (const auto& [id, types] : per_task) {
    EXPECT_EQ(types,
              (std::vector<TaskEvent::Type>{
                  TaskEvent::CREATED, TaskEvent::UPDATED, TaskEvent::UPDATED}))
        << id;
  }
}

TEST_F(WatchTest, FromNowStartsAfterTheCurrentRevision) {
  Create();
  Create();
  WatchTasksRequest request;  // start_revision 0: from now on
  auto stream = Open(request);
  WatchTasksResponse first;
  ASSERT_TRUE(stream->reader->Read(&first));
  // The first response tells the position even with no events.
  EXPECT_TRUE(first.progress());
  EXPECT_EQ(first.revision(), 2);
  Task third = Create();
  std::vector<TaskEvent> events = ReadUntil(stream.get(), 3);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].task().id(), third.id());
  EXPECT_EQ(events[0].type(), TaskEvent::CREATED);
}

TEST_F(WatchTest, ResumeAfterDisconnectDeliversExactlyWhatWasMissed) {
  WatchTasksRequest request;
  request.set_start_revision(1);
  for (int i = 0; i < 5; ++i) Create();
  int64_t seen;
  {
    auto stream = Open(request);
    std::vector<TaskEvent> events = ReadUntil(stream.get(), 5);
    ASSERT_EQ(events.size(), 5u);
    seen = events.back().revision();
    stream->context.TryCancel();
  }
  for (int i = 0; i < 7; ++i) Create();
  request.set_start_revision(seen + 1);
  auto stream = Open(request);
  std::vector<TaskEvent> events = ReadUntil(stream.get(), 12);
  ASSERT_EQ(events.size(), 7u);
  ExpectConsecutive(events, 6);
}

TEST_F(WatchTest, ResumeAcrossARestart) {
  for (int i = 0; i < 4; ++i) Create();
  Restart();
  for (int i = 0; i < 3; ++i) Create();
  WatchTasksRequest request;
  request.set_start_revision(3);
  auto stream = Open(request);
  std::vector<TaskEvent> events = ReadUntil(stream.get(), 7);
  ASSERT_EQ(events.size(), 5u);
  ExpectConsecutive(events, 3);
}

TEST_F(WatchTest, ClientWatchResumesAcrossRestartExactlyOnce) {
  WatchTasksRequest request;
  request.set_start_revision(1);
  TaskWatch::Options options;
  options.initial_backoff = absl::Milliseconds(20);
  std::vector<TaskEvent> events;
  absl::Mutex mu;
  int reconnects = 0;
  // The client keeps its channel; the server comes back on the same port.
  auto channel = taskd_.channel;
  TaskWatch watch(channel, request, options);
  TaskWatch::Callbacks callbacks;
  callbacks.on_event = [&](const TaskEvent& e) {
    absl::MutexLock lock(&mu);
    events.push_back(e);
  };
  callbacks.on_reconnect = [&](const absl::Status&, absl::Duration) {
    absl::MutexLock lock(&mu);
    ++reconnects;
  };
  absl::Status result;
  std::thread runner([&] { result = watch.Run(callbacks); });
  for (int i = 0; i < 5; ++i) Create();
  auto count = [&] {
    absl::MutexLock lock(&mu);
    return events.size();
  };
  while (count() < 5) absl::SleepFor(absl::Milliseconds(10));
  // Restart on the same port. Writes go through the new channel Restart
  // makes: the old one may still be backing off from the refused
  // connections of the restart, and would fail them fast (seen under load).
  // The watch keeps the old channel, as a client would.
  Restart();
  for (int i = 0; i < 5; ++i) Create();
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (count() < 10 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  watch.Stop();
  runner.join();
  EXPECT_TRUE(result.ok()) << result;
  absl::MutexLock lock(&mu);
  ASSERT_EQ(events.size(), 10u);
  ExpectConsecutive(events, 1);
  EXPECT_GE(reconnects, 1);
  EXPECT_EQ(watch.last_revision(), 10);
}

TEST_F(WatchTest, InitialStateSeamUnderConcurrentWrites) {
  for (int i = 0; i < 50; ++i) Create();
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      Task t = Create();
      if (i % 2) taskd_.client->Assign(t.id(), "agent").IgnoreError();
      if (i % 5 == 0) taskd_.client->Delete(t.id()).IgnoreError();
    }
  });
  absl::SleepFor(absl::Milliseconds(20));
  WatchTasksRequest request;
  request.set_send_initial_state(true);
  auto stream = Open(request);
  std::map<std::string, Task> view;
  int64_t snapshot = -1;
  std::vector<TaskEvent> live;
  WatchTasksResponse response;
  while (snapshot < 0 && stream->reader->Read(&response)) {
    for (const TaskEvent& e : response.events()) view[e.task().id()] = e.task();
    if (response.initial_state_complete()) snapshot = response.revision();
  }
  ASSERT_GE(snapshot, 50);
  absl::SleepFor(absl::Milliseconds(100));
  stop = true;
  writer.join();
  int64_t last = store()->CurrentRevision();
  if (last > snapshot) live = ReadUntil(stream.get(), last);
  // Nothing lost or doubled at the seam: the live part starts right after
  // the snapshot and runs without gaps.
  ExpectConsecutive(live, snapshot + 1);
  ASSERT_EQ(static_cast<int64_t>(live.size()), last - snapshot);
  // The snapshot held no task changed after it.
  for (const auto& [id, task] : view) EXPECT_LE(task.revision(), snapshot);
  // Snapshot + live changes = the final state.
  for (const TaskEvent& e : live) {
    if (e.type() == TaskEvent::DELETED) {
      EXPECT_EQ(view.erase(e.task().id()), 1u) << e.task().id();
    } else {
      view[e.task().id()] = e.task();
    }
  }
  tasks::v1::ListTasksRequest list;
  list.set_page_size(1000);
  std::map<std::string, int64_t> final_state;
  while (true) {
    absl::StatusOr<tasks::v1::ListTasksResponse> page =
        taskd_.client->List(list);
    ASSERT_TRUE(page.ok());
    for (const Task& t : page->tasks()) final_state[t.id()] = t.revision();
    if (page->next_page_token().empty()) break;
    list.set_page_token(page->next_page_token());
  }
  std::map<std::string, int64_t> rebuilt;
  for (const auto& [id, task] : view) rebuilt[id] = task.revision();
  EXPECT_EQ(rebuilt, final_state);
}

TEST_F(WatchTest, CompactedRevisionIsOutOfRangeNamingTheOldest) {
  taskd_.options().server.store.history_max_changes = 10;
  Restart();
  for (int i = 0; i < 30; ++i) Create();
  WatchTasksRequest request;
  request.set_start_revision(5);
  auto stream = Open(request);
  WatchTasksResponse response;
  EXPECT_FALSE(stream->reader->Read(&response));
  grpc::Status status = stream->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(status.error_message(),
              HasSubstr("oldest revision available is 21"));
  // From the oldest kept revision it works.
  request.set_start_revision(21);
  auto ok = Open(request);
  EXPECT_EQ(ReadUntil(ok.get(), 30).size(), 10u);
}

// A resume point ahead of the database: the client last watched a database
// that has since lost its newest changes (here: a fresh one). Waiting would
// hide that; the watch ends with OUT_OF_RANGE, and current + 1, the next
// revision to come, is still a valid start.
TEST_F(WatchTest, StartAheadOfTheNewestRevisionIsOutOfRange) {
  for (int i = 0; i < 3; ++i) Create();
  WatchTasksRequest request;
  request.set_start_revision(5);
  auto ahead = Open(request);
  WatchTasksResponse response;
  EXPECT_FALSE(ahead->reader->Read(&response));
  grpc::Status status = ahead->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(status.error_message(),
              HasSubstr("ahead of the newest revision, 3"));
  EXPECT_EQ(ReasonOf(FromGrpcStatus(status)), "REVISION_AHEAD");

  request.set_start_revision(4);
  auto next = Open(request);
  Task created = Create();
  std::vector<TaskEvent> events = ReadUntil(next.get(), created.revision());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].revision(), 4);
}

TEST_F(WatchTest, FilteredWatchSeesTasksEnterAndLeave) {
  WatchTasksRequest request;
  request.set_filter("state = \"started\"");
  request.set_start_revision(1);
  // Progress tells the watcher when it has seen everything up to 6.
  request.mutable_progress_interval()->set_nanos(100'000'000);
  auto stream = Open(request);
  Task a = Create();
  Task b = Create("restore");
  absl::StatusOr<Task> assigned = taskd_.client->Assign(a.id(), "x");
  ASSERT_TRUE(assigned.ok());  // 3: not visible
  const std::string lease = assigned->lease_token();
  ASSERT_TRUE(taskd_.client->Start(a.id(), lease).ok());  // 4: enters
  ASSERT_TRUE(taskd_.client->Pause(a.id(), lease).ok());  // 5: leaves
  ASSERT_TRUE(taskd_.client->Cancel(b.id()).ok());        // 6: never visible
  std::vector<TaskEvent> events = ReadUntil(stream.get(), 6);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].revision(), 4);
  EXPECT_EQ(events[0].task().state(), Task::started);
  EXPECT_EQ(events[1].revision(), 5);
  EXPECT_EQ(events[1].task().state(), Task::paused);
}

TEST_F(WatchTest, ProgressAdvancesAQuietWatcher) {
  WatchTasksRequest request;
  request.set_filter("type = \"never\"");
  request.mutable_progress_interval()->set_nanos(100'000'000);
  auto stream = Open(request);
  for (int i = 0; i < 5; ++i) Create();
  int64_t highest = 0;
  WatchTasksResponse response;
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (highest < 5 && absl::Now() < deadline &&
         stream->reader->Read(&response)) {
    EXPECT_TRUE(response.progress());
    EXPECT_EQ(response.events_size(), 0);
    EXPECT_GE(response.revision(), highest) << "progress went backwards";
    highest = response.revision();
  }
  EXPECT_EQ(highest, 5);
}

// Progress is timed by the server's clock: with a FakeClock, a quiet
// watcher gets its next progress response when the clock passes the
// interval, and not before, however long it waits in real time.
TEST_F(WatchTest, ProgressFollowsTheServersClock) {
  FakeClock clock(absl::FromUnixSeconds(1'700'000'000));
  taskd_.options().server.clock = &clock;
  Restart();
  WatchTasksRequest request;
  request.mutable_progress_interval()->set_seconds(60);
  auto stream = Open(request);
  WatchTasksResponse response;
  ASSERT_TRUE(stream->reader->Read(&response));  // the first, at once
  EXPECT_TRUE(response.progress());
  // A create wakes the watcher: its event, not a progress response.
  Create();
  ASSERT_TRUE(stream->reader->Read(&response));
  EXPECT_EQ(response.events_size(), 1);
  // Nothing for 59 s of the server's time...
  clock.Advance(absl::Seconds(59));
  absl::SleepFor(absl::Milliseconds(300));  // ticks pass in real time
  Create("restore");
  ASSERT_TRUE(stream->reader->Read(&response));
  EXPECT_EQ(response.events_size(), 1) << "no progress came before the event";
  // ...then, 60 s after the last response, progress without any write.
  clock.Advance(absl::Seconds(61));
  ASSERT_TRUE(stream->reader->Read(&response));
  EXPECT_TRUE(response.progress());
  EXPECT_EQ(response.revision(), 2);
  stream->context.TryCancel();
  taskd_.Stop();  // before `clock` goes
}

// An initial state beyond max_initial_state is refused with a reason of its
// own, and TaskWatch gives it to the caller instead of retrying for ever.
TEST_F(WatchTest, TooLargeAnInitialStateIsRefusedAndNotRetried) {
  taskd_.options().server.watch.max_initial_state = 3;
  Restart();
  std::vector<Task> tasks;
  for (int i = 0; i < 4; ++i) tasks.push_back(Create());
  WatchTasksRequest request;
  request.set_send_initial_state(true);
  TaskWatch watch(taskd_.channel, request);
  TaskWatch::Callbacks callbacks;
  int reconnects = 0;
  callbacks.on_reconnect = [&](const absl::Status&, absl::Duration) {
    ++reconnects;
  };
  absl::Status ended = watch.Run(callbacks);
  EXPECT_EQ(ended.code(), absl::StatusCode::kResourceExhausted) << ended;
  EXPECT_EQ(ReasonOf(ended), "INITIAL_STATE_TOO_LARGE") << ended;
  EXPECT_THAT(std::string(ended.message()), HasSubstr("send_initial_state"));
  EXPECT_EQ(reconnects, 0);
  // Three tasks fit.
  ASSERT_TRUE(taskd_.client->Delete(tasks[0].id()).ok());
  TaskWatch fits(taskd_.channel, request);
  int initial = 0;
  callbacks.on_event = [&](const TaskEvent&) { ++initial; };
  callbacks.on_initial_state_complete = [&](int64_t) { fits.Stop(); };
  EXPECT_TRUE(fits.Run(callbacks).ok());
  EXPECT_EQ(initial, 3);
}

// Watchers whose filter pins a tenant are woken only by that tenant's
// changes and skip the others (watch_hub.h, Routing). Each must still see
// exactly its tenant's events, in order, live and when resuming from the
// history; a watcher of a tenant nobody writes to still advances by
// progress responses.
TEST_F(WatchTest, TenantRoutedWatchersSeeExactlyTheirTenant) {
  CheckTenantRouting();
}

// The same with a ring of 16 changes: routed watchers fall behind it and
// catch up from the stored history.
TEST_F(WatchTest, TenantRoutedWatchersBehindTheRing) {
  taskd_.options().server.watch.ring_capacity = 16;
  Restart();
  CheckTenantRouting();
}

TEST_F(WatchTest, BadRequestsAreRefused) {
  struct Case {
    void (*set)(WatchTasksRequest*);
    grpc::StatusCode code;
    const char* mentions;
  } cases[] = {
      {[](WatchTasksRequest* r) { r->set_filter("stat = \"x\""); },
       grpc::StatusCode::INVALID_ARGUMENT, "column"},
      {[](WatchTasksRequest* r) { r->set_start_revision(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "start_revision"},
      {[](WatchTasksRequest* r) {
         r->set_send_initial_state(true);
         r->set_start_revision(3);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "send_initial_state"},
      {[](WatchTasksRequest* r) {
         r->mutable_progress_interval()->set_seconds(-1);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "progress_interval"},
  };
  for (const Case& c : cases) {
    WatchTasksRequest request;
    c.set(&request);
    auto stream = Open(request);
    WatchTasksResponse response;
    EXPECT_FALSE(stream->reader->Read(&response));
    grpc::Status status = stream->reader->Finish();
    EXPECT_EQ(status.error_code(), c.code) << c.mentions;
    EXPECT_THAT(status.error_message(), HasSubstr(c.mentions));
  }
}

TEST_F(WatchTest, ShutdownSendsFinalProgressThenUnavailable) {
  for (int i = 0; i < 3; ++i) Create();
  WatchTasksRequest request;
  request.set_start_revision(1);
  auto stream = Open(request);
  EXPECT_EQ(ReadUntil(stream.get(), 3).size(), 3u);
  std::thread stopper([&] { taskd_.server->Shutdown(absl::Seconds(5)); });
  WatchTasksResponse response;
  ASSERT_TRUE(stream->reader->Read(&response));
  EXPECT_TRUE(response.progress());
  EXPECT_EQ(response.revision(), 3);
  EXPECT_FALSE(stream->reader->Read(&response));
  grpc::Status status = stream->reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("start_revision=4"));
  stopper.join();
  taskd_.Stop();
}

// A watcher on the callback API, so that a thousand of them need no thread
// each. Counts events and checks their order.
class CountingWatcher final
    : public grpc::ClientReadReactor<WatchTasksResponse> {
 public:
  CountingWatcher(tasks::v1::TaskService::Stub* stub, int64_t start,
                  int64_t until)
      : until_(until), next_(start) {
    WatchTasksRequest request;
    request.set_start_revision(start);
    stub->async()->WatchTasks(&context_, &request, this);
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    for (const TaskEvent& e : response_.events()) {
      if (e.revision() != next_) in_order_ = false;
      next_ = e.revision() + 1;
      ++count_;
    }
    if (next_ > until_) {
      context_.TryCancel();
      return;
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status&) override { done_.Notify(); }
  void Cancel() { context_.TryCancel(); }
  void WaitDone() { done_.WaitForNotification(); }
  int count() const { return count_; }
  bool in_order() const { return in_order_; }

 private:
  grpc::ClientContext context_;
  WatchTasksResponse response_;
  const int64_t until_;
  int64_t next_;
  int count_ = 0;
  bool in_order_ = true;
  absl::Notification done_;
};

TEST_F(WatchTest, AThousandWatchersEachReceiveEveryEvent) {
  constexpr int kWatchers = 1000, kChannels = 8, kChanges = 50;
  std::vector<std::unique_ptr<tasks::v1::TaskService::Stub>> stubs;
  for (int i = 0; i < kChannels; ++i) {
    stubs.push_back(tasks::v1::TaskService::NewStub(taskd_.NewChannel()));
  }
  std::vector<std::unique_ptr<CountingWatcher>> watchers;
  for (int i = 0; i < kWatchers; ++i) {
    watchers.push_back(std::make_unique<CountingWatcher>(
        stubs[i % kChannels].get(), 1, kChanges));
  }
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (taskd_.server->watch_hub()->open_watchers() < kWatchers &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(taskd_.server->watch_hub()->open_watchers(), size_t{kWatchers});
  for (int i = 0; i < kChanges; ++i) Create();
  for (auto& w : watchers) w->WaitDone();
  for (auto& w : watchers) {
    EXPECT_EQ(w->count(), kChanges);
    EXPECT_TRUE(w->in_order());
  }
}

// Clients that cancel while their streams are being written to: the
// server must never start a write on a stream it has finished (gRPC then
// calls into a freed call; taskd once aborted with "pure virtual method
// called" when 1,000 watchers hung up during a load test). Rounds of 300
// streams cancelled at once while a writer keeps every stream busy. The
// race is narrow: with the fix removed this test still passed in three runs
// here, so it guards the path rather than proving the fix (the load test,
// taskd pinned to one core, reproduced it).
TEST_F(WatchTest, ManyStreamsCancelledDuringWritesLeaveTheServerUp) {
  constexpr int kRounds = 3, kWatchers = 300, kChannels = 4;
  std::vector<std::unique_ptr<tasks::v1::TaskService::Stub>> stubs;
  for (int i = 0; i < kChannels; ++i) {
    stubs.push_back(tasks::v1::TaskService::NewStub(taskd_.NewChannel()));
  }
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    TaskClient client(taskd_.NewChannel());
    Task task;
    task.set_type("backup");
    while (!stop.load()) ASSERT_TRUE(client.Create(task).ok());
  });
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::unique_ptr<CountingWatcher>> watchers;
    for (int i = 0; i < kWatchers; ++i) {
      watchers.push_back(std::make_unique<CountingWatcher>(
          stubs[i % kChannels].get(), 1, std::numeric_limits<int64_t>::max()));
    }
    absl::SleepFor(absl::Milliseconds(300));
    for (auto& w : watchers) w->Cancel();
    for (auto& w : watchers) w->WaitDone();
  }
  stop = true;
  writer.join();
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (taskd_.server->watch_hub()->open_watchers() > 0 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(taskd_.server->watch_hub()->open_watchers(), 0u);
  Create();  // still serving
}

TEST_F(WatchTest, StalledReaderSlowsNobody) {
  taskd_.options().server.watch.ring_capacity =
      64;  // so that the stalled reader falls off the ring
  Restart();
  // Opens a stream and never reads it.
  WatchTasksRequest request;
  request.set_start_revision(1);
  auto stalled = Open(request, taskd_.NewChannel());
  constexpr int kChanges = 3000;
  auto active_stub = tasks::v1::TaskService::NewStub(taskd_.NewChannel());
  CountingWatcher active(active_stub.get(), 1, kChanges);
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&] {
      Task task;
      task.set_type(std::string(60, 'x'));  // fills flow-control windows sooner
      for (int i = 0; i < kChanges / 4; ++i) {
        absl::Status status = taskd_.client->Create(task).status();
        ASSERT_TRUE(status.ok()) << status;
      }
    });
  }
  for (auto& t : writers) t.join();
  active.WaitDone();
  EXPECT_EQ(active.count(), kChanges);
  EXPECT_TRUE(active.in_order());
  // The stalled reader still gets everything, in order, once it reads.
  std::vector<TaskEvent> events = ReadUntil(stalled.get(), kChanges);
  ASSERT_EQ(events.size(), size_t{kChanges});
  ExpectConsecutive(events, 1);
}

}  // namespace
}  // namespace taskd
