// Durability under kill -9: the real taskd binary, writers on several
// threads, SIGKILL at random moments, restart on the same database, many
// times over.
//
// The promise checked after every restart (README, "Durability"): every
// change taskd acknowledged is there. Precisely, for every task: each writer
// owns its tasks and calls on one task one at a time, so the task's changes
// form one chain, known to the writer. A call that was answered OK is in the
// history at the revision it was answered with, with the state it was
// answered with. A call whose answer was lost to the kill (UNAVAILABLE and
// the like) may or may not have been committed: the history then holds the
// acknowledged chain, or that chain followed by exactly that one change.
// Nothing else is allowed: no acknowledged change missing, no change nobody
// asked for, none applied twice, none applied in part. On top, the file
// itself passes CheckDatabase (integrity_check, revisions without gaps,
// replaying the history gives the tasks table), and taskd serves what the
// file holds.
//
// Rounds: CRASH_ROUNDS (default 20). Every third round runs --sync=normal,
// which makes the same promise for a crash of the process; every fifth
// round sends SIGTERM first and SIGKILL during the clean shutdown; every
// seventh also kills a taskd while it is starting (recovering the WAL).
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/task_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/db_check.h"
#include "tests/taskd_process.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::Task;
using ::testing::IsEmpty;

constexpr int kWriters = 4;

// One change to one task, as the writer asked for it and (once known) as it
// was committed.
struct Step {
  int kind = 1;  // 1 created, 2 updated, 3 deleted (as in `changes`)
  Task::State state = Task::enqueued;
  Task::ResultCode result = Task::RESULT_CODE_UNSPECIFIED;
  int64_t revision = 0;  // 0 until known

  bool Matches(const testing::HistoryRow& row) const {
    return row.kind == kind && row.task.state() == state &&
           row.task.result_code() == result &&
           (revision == 0 || row.revision == revision);
  }
  std::string ToString() const {
    return absl::StrCat("{kind ", kind, ", ", Task::State_Name(state), "/",
                        Task::ResultCode_Name(result), ", rev ", revision, "}");
  }
};

struct TaskModel {
  int owner = 0;
  // The changes known committed, in order: acknowledged, or found in the
  // history after a restart.
  std::vector<Step> committed;
  // The one call whose answer was lost, if any.
  std::optional<Step> pending;
  // The lease token of the last assignment answered (empty if its answer
  // was lost: then only a forced cancel can end the task).
  std::string lease;

  bool deleted() const {
    return !committed.empty() && committed.back().kind == 3;
  }
  Task::State state() const {
    return committed.empty() ? Task::STATE_UNSPECIFIED : committed.back().state;
  }
};

std::string ToString(const std::vector<Step>& steps) {
  std::string out;
  for (const Step& s : steps) absl::StrAppend(&out, s.ToString(), " ");
  return out;
}

class CrashTest : public ::testing::Test {
 protected:
  // Drives tasks of writer `w` until a call fails or `stop`.
  void Write(int w, int round, std::shared_ptr<grpc::Channel> channel,
             const std::atomic<bool>& stop) {
    TaskClient::Options options;
    options.deadline = absl::Seconds(10);
    TaskClient client(std::move(channel), options);
    std::mt19937 random(round * 100 + w);
    int created = 0;
    while (!stop) {
      // The writer's tasks that can still change.
      std::vector<std::string> live;
      int open = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& [id, model] : models_) {
          // (A create whose answer was lost and that was not committed
          // leaves a model with nothing committed: that id stays unused.)
          if (model.owner != w || model.committed.empty() || model.deleted()) {
            continue;
          }
          live.push_back(id);
          if (model.state() != Task::completed) ++open;
        }
      }
      std::string id;
      std::string lease;  // the task's lease token, if known
      Step step;
      absl::StatusOr<Task> result;
      absl::Status status;
      if (open < 4 || random() % 4 == 0) {
        id = absl::StrCat("r", round, "-w", w, "-", created++);
        {
          std::lock_guard<std::mutex> lock(mu_);
          models_[id].owner = w;
          models_[id].pending = step;
        }
        Task task;
        task.set_id(id);
        task.set_type("backup");
        result = client.Create(task);
      } else {
        id = live[random() % live.size()];
        Task::State state;
        Task::ResultCode result_before;
        {
          std::lock_guard<std::mutex> lock(mu_);
          state = models_[id].state();
          result_before = models_[id].committed.back().result;
          lease = models_[id].lease;
        }
        step.kind = 2;
        int pick = static_cast<int>(random() % 6);
        const bool held = state == Task::assigned || state == Task::started ||
                          state == Task::paused;
        // A move the state allows; Cancel (forced) now and then from any
        // open state, and always for a held task whose lease is unknown.
        if (state != Task::completed &&
            (pick == 0 || (held && lease.empty()))) {
          step.state = Task::completed;
          step.result = Task::cancelled;
        } else {
          switch (state) {
            case Task::enqueued:
              step.state = Task::assigned;
              break;
            case Task::assigned:
              step.state = pick < 4 ? Task::started : Task::completed;
              break;
            case Task::started:
              step.state = pick < 3 ? Task::paused : Task::completed;
              break;
            case Task::paused:
              step.state = pick < 4 ? Task::started : Task::completed;
              break;
            default:  // completed: delete it (the task as it was)
              step.kind = 3;
              step.state = Task::completed;
              step.result = result_before;
              break;
          }
          if (step.state == Task::completed && step.kind == 2) {
            step.result = pick % 2 ? Task::ok : Task::error;
          }
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          models_[id].pending = step;
        }
        if (step.kind == 3) {
          status = client.Delete(id);
          result = status.ok() ? absl::StatusOr<Task>(Task()) : status;
        } else if (step.result == Task::cancelled) {
          result = client.Cancel(id, "", /*force=*/true);
        } else if (step.state == Task::completed) {
          result = client.Complete(id, step.result, lease);
        } else if (step.state == Task::assigned) {
          result = client.Assign(id, absl::StrCat("agent-", w));
        } else if (step.state == Task::paused) {
          result = client.Pause(id, lease);
        } else if (state == Task::paused) {
          result = client.Resume(id, lease);
        } else {
          result = client.Start(id, lease);
        }
      }
      std::lock_guard<std::mutex> lock(mu_);
      TaskModel& model = models_[id];
      if (result.ok()) {
        if (step.state == Task::assigned) model.lease = result->lease_token();
        if (step.kind != 3) {
          EXPECT_EQ(result->state(), step.state) << id;
          EXPECT_EQ(result->result_code(), step.result) << id;
          step.revision = result->revision();
        }
        // A deletion's revision is not answered; the history tells it.
        model.committed.push_back(step);
        model.pending.reset();
        ++acknowledged_;
        continue;
      }
      // The answer was lost: the server died under the call. Any other
      // error means the model is wrong.
      absl::StatusCode code = result.status().code();
      EXPECT_THAT(code, ::testing::AnyOf(absl::StatusCode::kUnavailable,
                                         absl::StatusCode::kCancelled,
                                         absl::StatusCode::kUnknown,
                                         absl::StatusCode::kInternal,
                                         absl::StatusCode::kDeadlineExceeded))
          << id << " " << step.ToString() << ": " << result.status();
      ++lost_answers_;
      return;  // the server is gone for this round
    }
  }

  // taskd on the test's database, serving (*taskd) or not (a failure).
  void StartTaskd(const std::string& sync,
                  std::unique_ptr<testing::TaskdProcess>* taskd) {
    testing::TaskdProcess::Options options;
    options.db_path = db_;
    // No ack timeout: a task the model assigned waits for its start
    // however many rounds pass.
    options.flags = {"--sync=" + sync, "--default_ack_timeout=0"};
    *taskd = std::make_unique<testing::TaskdProcess>(options);
    absl::Status started = (*taskd)->Start();
    ASSERT_TRUE(started.ok()) << started;
  }

  // After a restart: the file and the served state against the model.
  void Verify(testing::TaskdProcess& taskd, int round) {
    SCOPED_TRACE(absl::StrCat("after round ", round));
    testing::DbCheck check = testing::CheckDatabase(db_);
    ASSERT_THAT(check.problems, IsEmpty());
    EXPECT_EQ(taskd.start_revision(), check.meta_revision)
        << "taskd started at another revision than the file's";
    if (!check.history.empty()) {
      EXPECT_EQ(check.oldest, 1) << "the history was trimmed";
    }

    std::map<std::string, std::vector<const testing::HistoryRow*>> per_task;
    for (const testing::HistoryRow& row : check.history) {
      per_task[row.task_id].push_back(&row);
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, rows] : per_task) {
      EXPECT_TRUE(models_.count(id))
          << "change to a task nobody created: " << id;
    }
    int applied_pending = 0;
    for (auto& [id, model] : models_) {
      const std::vector<const testing::HistoryRow*>& rows = per_task[id];
      std::vector<Step>& known = model.committed;
      bool prefix_ok = rows.size() >= known.size();
      for (size_t i = 0; prefix_ok && i < known.size(); ++i) {
        prefix_ok = known[i].Matches(*rows[i]);
      }
      bool ok = prefix_ok && rows.size() == known.size();
      if (prefix_ok && rows.size() == known.size() + 1 && model.pending &&
          model.pending->Matches(*rows.back())) {
        ok = true;  // the call whose answer was lost was committed
        Step step = *model.pending;
        step.revision = rows.back()->revision;
        known.push_back(step);
        ++applied_pending;
      }
      std::string found;
      for (const testing::HistoryRow* row : rows) {
        absl::StrAppend(&found, "{kind ", row->kind, ", ",
                        Task::State_Name(row->task.state()), "/",
                        Task::ResultCode_Name(row->task.result_code()),
                        ", rev ", row->revision, "} ");
      }
      EXPECT_TRUE(ok) << "task " << id
                      << "\n  known committed: " << ToString(known)
                      << "\n  lost answer: "
                      << (model.pending ? model.pending->ToString() : "none")
                      << "\n  history: " << found;
      // Deletions learn their revision from the history.
      for (size_t i = 0; ok && i < known.size(); ++i) {
        known[i].revision = rows[i]->revision;
      }
      model.pending.reset();
      EXPECT_EQ(check.tasks.count(id) == 1, !known.empty() && !model.deleted())
          << id;
    }
    std::cout << "[ figures  ] round " << round << ": revision "
              << check.meta_revision << ", " << check.tasks.size() << " tasks; "
              << applied_pending << " unanswered calls were committed\n";

    // taskd serves what the file holds.
    TaskClient client(taskd.NewChannel());
    tasks::v1::ListTasksRequest request;
    request.set_page_size(1000);
    size_t listed = 0;
    while (true) {
      absl::StatusOr<tasks::v1::ListTasksResponse> page = client.List(request);
      ASSERT_TRUE(page.ok()) << page.status();
      for (const Task& task : page->tasks()) {
        ++listed;
        auto stored = check.tasks.find(task.id());
        ASSERT_NE(stored, check.tasks.end()) << task.id();
        EXPECT_EQ(task.revision(), stored->second.revision()) << task.id();
        EXPECT_EQ(task.state(), stored->second.state()) << task.id();
      }
      if (page->next_page_token().empty()) break;
      request.set_page_token(page->next_page_token());
    }
    EXPECT_EQ(listed, check.tasks.size());
  }

  testing::TempDir dir_;
  const std::string db_ = dir_.File("taskd.db");
  std::mutex mu_;
  std::map<std::string, TaskModel> models_;
  int64_t acknowledged_ = 0;
  int64_t lost_answers_ = 0;
};

TEST_F(CrashTest, EveryAcknowledgedChangeSurvivesKillNine) {
  int rounds = 20;
  if (const char* env = std::getenv("CRASH_ROUNDS")) rounds = std::atoi(env);
  std::mt19937 random(2024);
  absl::Time start = absl::Now();
  for (int round = 0; round < rounds; ++round) {
    const std::string sync = round % 3 == 2 ? "normal" : "full";
    if (round % 7 == 3) {
      // Killed while starting: opening the database, recovering the WAL
      // the last kill left, migrating.
      testing::TaskdProcess::Options options;
      options.db_path = db_;
      testing::TaskdProcess starting(options);
      starting.Launch();
      absl::SleepFor(absl::Milliseconds(random() % 30));
      starting.Kill();
    }
    std::unique_ptr<testing::TaskdProcess> taskd;
    ASSERT_NO_FATAL_FAILURE(StartTaskd(sync, &taskd));
    if (round > 0) {
      Verify(*taskd, round - 1);
      if (HasFatalFailure() || HasFailure()) return;
    }
    auto channel = taskd->NewChannel();
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back(
          [this, w, round, channel, &stop] { Write(w, round, channel, stop); });
    }
    // Now and then at once, mostly while writes are in full flow.
    int delay_ms = random() % 5 == 0 ? static_cast<int>(random() % 50)
                                     : 50 + static_cast<int>(random() % 1200);
    absl::SleepFor(absl::Milliseconds(delay_ms));
    if (round % 5 == 4) {
      // Killed during the clean shutdown (checkpoint included).
      taskd->Signal(SIGTERM);
      absl::SleepFor(absl::Milliseconds(random() % 30));
    }
    int exit = taskd->Kill(absl::Seconds(20));
    EXPECT_TRUE(exit == 128 + SIGKILL || (round % 5 == 4 && exit == 0))
        << "exit " << exit;
    stop = true;
    for (auto& t : writers) t.join();
  }
  // The last kill, checked on a final start.
  std::unique_ptr<testing::TaskdProcess> taskd;
  ASSERT_NO_FATAL_FAILURE(StartTaskd("full", &taskd));
  Verify(*taskd, rounds - 1);
  std::cout << "[ figures  ] " << rounds << " kills in "
            << absl::FormatDuration(absl::Now() - start) << "; "
            << acknowledged_ << " calls acknowledged, " << lost_answers_
            << " answers lost to a kill\n";
  EXPECT_GT(acknowledged_, 100);
}

}  // namespace
}  // namespace taskd
