// taskctl's commands and flags as a user runs them, against a real taskd:
// every command, --etag, list's paging flags, $TASKD_SERVER, --timeout, the
// usage errors. (Security flags: taskctl_security_test.cc.)
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/taskd_process.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using Result = testing::CommandResult;
using testing::JsonField;

// The value of "key": "value" in taskctl's JSON output ("" if absent).
class TaskctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    taskd_ =
        std::make_unique<testing::TaskdProcess>(testing::TaskdProcess::Options{
            .flags = {"--sync=normal", "--max_page_size=2"},
            .db_path = dir_.File("taskd.db")});
    absl::Status started = taskd_->Start();
    ASSERT_TRUE(started.ok()) << started;
  }

  // taskctl with `args`, talking to the test's taskd unless `args` or `env`
  // says otherwise.
  Result Taskctl(const std::vector<std::string>& args,
                 const std::vector<std::string>& env = {},
                 bool with_server = true,
                 absl::Duration stop_after = absl::ZeroDuration()) {
    std::vector<std::string> argv;
    if (with_server) argv.push_back("--server=" + taskd_->address());
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunTaskctl(argv, env, stop_after);
  }

  Result MustRun(const std::vector<std::string>& args) {
    Result run = Taskctl(args);
    EXPECT_EQ(run.rc, 0) << run;
    return run;
  }

  testing::TempDir dir_;
  std::unique_ptr<testing::TaskdProcess> taskd_;
};

TEST_F(TaskctlTest, CountGroupsByTheFieldsAsked) {
  MustRun({"create", "--type=backup"});
  MustRun({"create", "--type=backup"});
  MustRun({"create", "--type=restore", "--priority=high"});
  Result by_type = MustRun({"count", "--group-by=type,priority"});
  EXPECT_THAT(by_type.out,
              ::testing::MatchesRegex("backup +normal +2\nrestore +high +1\n"))
      << by_type;
  EXPECT_THAT(by_type.err, HasSubstr("(revision 3)"));
  Result total = MustRun({"count", "--filter=type = restore", "-o", "json"});
  EXPECT_THAT(total.out, HasSubstr(R"("count": "1")"));
  Result none = MustRun({"count", "--filter=type = nothing"});
  EXPECT_EQ(none.out, "0\n");
  Result bad = Taskctl({"count", "--group-by=state,id"});
  EXPECT_EQ(bad.rc, 1) << bad;
  EXPECT_THAT(bad.err, HasSubstr("group_by[1]"));
}

TEST_F(TaskctlTest, EveryLifeCycleCommandMovesTheTask) {
  MustRun({"create", "--type=backup", "--id=job", "--priority=low"});
  Result updated = MustRun(
      {"update", "job", "--priority=high", "--type=restore", "-o", "json"});
  EXPECT_EQ(JsonField(updated.out, "priority"), "high");
  EXPECT_EQ(JsonField(updated.out, "type"), "restore");
  Result assigned =
      MustRun({"assign", "job", "--executor=agent-1", "-o", "json"});
  const std::string lease = "--lease=" + JsonField(assigned.out, "leaseToken");
  ASSERT_NE(lease, "--lease=") << assigned;
  MustRun({"start", "job", lease});
  EXPECT_EQ(
      JsonField(MustRun({"pause", "job", lease, "-o", "json"}).out, "state"),
      "paused");
  EXPECT_EQ(
      JsonField(MustRun({"resume", "job", lease, "-o", "json"}).out, "state"),
      "started");
  // A held task: a cancel asks the executor; --force ends it.
  Result asked = MustRun({"cancel", "job", "-o", "json"});
  EXPECT_EQ(JsonField(asked.out, "state"), "started");
  EXPECT_THAT(asked.out, HasSubstr("\"cancelRequested\": true"));
  Result cancelled = MustRun({"cancel", "job", "--force", "-o", "json"});
  EXPECT_EQ(JsonField(cancelled.out, "state"), "completed");
  EXPECT_EQ(JsonField(cancelled.out, "result_code"), "cancelled");
  Result deleted = MustRun({"delete", "job"});
  EXPECT_THAT(deleted.out, HasSubstr("deleted job"));
  Result gone = Taskctl({"get", "job"});
  EXPECT_EQ(gone.rc, 1) << gone;
  EXPECT_THAT(gone.err, HasSubstr("NOT_FOUND"));
}

TEST_F(TaskctlTest, EtagMakesAChangeConditional) {
  Result created =
      MustRun({"create", "--type=backup", "--id=job", "-o", "json"});
  const std::string etag = JsonField(created.out, "etag");
  ASSERT_FALSE(etag.empty()) << created;
  Result stale = Taskctl({"assign", "job", "--executor=a", "--etag=not-it"});
  EXPECT_EQ(stale.rc, 1) << stale;
  EXPECT_THAT(stale.err, HasSubstr("ABORTED"));
  Result fresh = Taskctl({"assign", "job", "--executor=a", "--etag=" + etag});
  EXPECT_EQ(fresh.rc, 0) << fresh;
  // The etag moved with the change: the old one no longer deletes.
  Result old = Taskctl({"delete", "job", "--etag=" + etag});
  EXPECT_EQ(old.rc, 1) << old;
  EXPECT_THAT(old.err, HasSubstr("ABORTED"));
}

TEST_F(TaskctlTest, CreateFlagsReachTheTask) {
  const std::string policy = "0f1e2d3c-4b5a-4968-8776-655443322110";
  Result first = MustRun({"create", "--type=backup", "--policy-id=" + policy,
                          "--request-id=retry-1", "-o", "json"});
  EXPECT_EQ(JsonField(first.out, "policy_id"), policy);
  // The same request id is the same task: a retry creates nothing.
  Result again = MustRun(
      {"create", "--type=backup", "--request-id=retry-1", "-o", "json"});
  EXPECT_EQ(JsonField(again.out, "uuid"), JsonField(first.out, "uuid"));
  Result listed = MustRun({"list", "--all", "-o", "json"});
  std::vector<std::string> uuids = absl::StrSplit(listed.out, "\"uuid\"");
  EXPECT_EQ(uuids.size(), 2u) << listed;  // one task: text before, after
}

TEST_F(TaskctlTest, ListPagesFiltersAndOrders) {
  // The server caps pages at 2 (--max_page_size=2), even the default page.
  for (const char* id : {"a", "b", "c", "d", "e"}) {
    MustRun({"create", "--type", std::string(id) == "c" ? "restore" : "backup",
             "--id", id});
  }
  auto ids = [](const std::string& table) {
    std::vector<std::string> ids;
    for (absl::string_view line : absl::StrSplit(table, '\n')) {
      if (line.empty() || absl::StartsWith(line, "ID")) continue;
      ids.push_back(std::string(line.substr(0, line.find(' '))));
    }
    return ids;
  };
  Result first = MustRun({"list", "--order-by=id"});
  EXPECT_THAT(ids(first.out), ::testing::ElementsAre("a", "b"));
  EXPECT_THAT(first.err, HasSubstr("(more: --page-token="));
  std::string token = first.err.substr(first.err.find("--page-token=") + 13);
  token = token.substr(0, token.find(' '));
  Result second = MustRun({"list", "--order-by=id", "--page-token=" + token});
  EXPECT_THAT(ids(second.out), ::testing::ElementsAre("c", "d"));
  Result all = MustRun({"list", "--order-by=id desc", "--all"});
  EXPECT_THAT(ids(all.out), ::testing::ElementsAre("e", "d", "c", "b", "a"));
  EXPECT_THAT(all.err, Not(HasSubstr("more:")));
  Result limited = MustRun({"list", "--order-by=id", "--limit=3"});
  EXPECT_THAT(ids(limited.out), ::testing::ElementsAre("a", "b", "c"));
  Result filtered = MustRun({"list", "--filter=type = \"restore\"", "--all"});
  EXPECT_THAT(ids(filtered.out), ::testing::ElementsAre("c"));
  Result bad = Taskctl({"list", "--filter=type =="});
  EXPECT_EQ(bad.rc, 1) << bad;
  EXPECT_THAT(bad.err, HasSubstr("INVALID_ARGUMENT: filter"));
}

TEST_F(TaskctlTest, ServerComesFromTheFlagOrTheEnvironment) {
  MustRun({"create", "--type=backup", "--id=here"});
  Result from_env = Taskctl({"list"}, {"TASKD_SERVER=" + taskd_->address()},
                            /*with_server=*/false);
  EXPECT_EQ(from_env.rc, 0) << from_env;
  EXPECT_THAT(from_env.out, HasSubstr("here"));
  // --server wins over the environment.
  Result flag_wins = Taskctl({"list", "--server=" + taskd_->address()},
                             {"TASKD_SERVER=127.0.0.1:1"}, false);
  EXPECT_EQ(flag_wins.rc, 0) << flag_wins;
  Result nowhere =
      Taskctl({"list", "--timeout=2s"}, {"TASKD_SERVER=127.0.0.1:1"}, false);
  EXPECT_EQ(nowhere.rc, 1) << nowhere;
  EXPECT_THAT(nowhere.err, HasSubstr("UNAVAILABLE"));
}

TEST_F(TaskctlTest, TimeoutEndsACallToAServerThatDoesNotAnswer) {
  // A socket that accepts connections (the kernel does) and never speaks.
  testing::LoopbackListener listener;
  ASSERT_NE(listener.port(), 0);
  const std::string silent = listener.address();
  absl::Time start = absl::Now();
  Result run =
      Taskctl({"--server=" + silent, "--timeout=1s", "list"}, {}, false);
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(run.rc, 1) << run;
  EXPECT_THAT(run.err, HasSubstr("DEADLINE_EXCEEDED"));
  EXPECT_LT(took, absl::Seconds(8)) << "the default is 10 s";
}

TEST_F(TaskctlTest, UsageErrorsExitTwoAndSendNothing) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"list", "-o", "xml"},
           {"list", "--timeout=0"},
           {"list", "--timeout=soon"},
           {"list", "--limit=0"},
           {"list", "--all", "--limit=3"},
           {"complete", "x", "--result=great"},
           {"watch", "--since=0"},
           {"update", "x"},
           {"assign", "x"},
           {"create"},
           {"get"},
           {"backup"},
           {"backup", "x.db", "--filter=y"},
           {"list", "--colour=red"},
       }) {
    Result run = Taskctl(args);
    EXPECT_EQ(run.rc, 2) << absl::StrJoin(args, " ") << "\n" << run;
    EXPECT_THAT(run.err, HasSubstr("taskctl: ")) << absl::StrJoin(args, " ");
  }
  Result none = Taskctl({});
  EXPECT_EQ(none.rc, 2) << none;
  EXPECT_THAT(none.out, HasSubstr("usage: taskctl"));
  Result help = Taskctl({"help"});
  EXPECT_EQ(help.rc, 0) << help;
  EXPECT_THAT(help.out, HasSubstr("--tls-server-name"));
  // Nothing reached the server.
  EXPECT_THAT(MustRun({"list", "--all", "-o", "json"}).out,
              Not(HasSubstr("\"id\"")));
}

TEST_F(TaskctlTest, WatchWithInitialStatePrintsEachTaskOnce) {
  MustRun({"create", "--type=backup", "--id=one"});
  MustRun({"create", "--type=backup", "--id=two"});
  Result run =
      Taskctl({"-o", "json", "watch", "--initial"}, {}, true, absl::Seconds(3));
  EXPECT_EQ(run.rc, 124) << run;  // stopped by timeout, not an error
  EXPECT_THAT(run.err, HasSubstr("(initial state complete at revision 2)"));
  EXPECT_EQ(std::count(run.out.begin(), run.out.end(), '\n'), 2) << run;
  EXPECT_THAT(run.out, HasSubstr("\"one\""));
  EXPECT_THAT(run.out, HasSubstr("\"two\""));
}

}  // namespace
}  // namespace taskd
