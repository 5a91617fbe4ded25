// Differential test of the filter language: the same parsed filter evaluated
// by each engine's SQL (TaskStore::List, through storage/sqlite_query.cc, on
// SQLite and on PostgreSQL) and in memory (Matches()) must select the same
// tasks, and paging through an
// ordered listing must give exactly the in-memory sort of those tasks.
//
// Filters are generated as text from a small random grammar together with an
// independent reading of what they mean (precedence per AIP-160, the
// "unset never compares" rule of query/filter.h), so the test also checks
// that the parser reads the text the way the documentation says.
//
// Every run uses a fresh seed, printed with any failure; set
// TASKD_QUERY_SEED=<seed> to replay one.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "gtest/gtest.h"
#include "query/filter.h"
#include "query/order_by.h"
#include "query/task_counts.h"
#include "query/task_fields.h"
#include "storage/sqlite_task_store.h"
#include "tests/postgres_server.h"
#include "tests/test_store.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::Task;

constexpr int kTasks = 300;
constexpr int kFilters = 2000;
constexpr int kOrderedListings = 600;

// Small value pools, shared by the tasks and the filter literals so that
// equality hits often. They include the empty string, upper case (which
// sorts before lower case), multi-byte UTF-8 (which sorts after ASCII) and
// characters that need escaping in a filter string.
const std::vector<std::string>& Types() {
  static const auto* v = new std::vector<std::string>{
      "backup", "restore", "replication", "Backup", "\xc3\xa9t\xc3\xa9"};
  return *v;
}
const std::vector<std::string>& Tenants() {
  static const auto* v = new std::vector<std::string>{
      "", "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b", "tenant-b", "tenant-c"};
  return *v;
}
const std::vector<std::string>& Policies() {
  static const auto* v =
      new std::vector<std::string>{"", "policy-1", "policy-2", "p\"q\\r"};
  return *v;
}
const std::vector<std::string>& Executors() {
  static const auto* v =
      new std::vector<std::string>{"", "agent-1", "agent-7", "agent-70"};
  return *v;
}
const std::vector<std::string>& Resources() {
  static const auto* v =
      new std::vector<std::string>{"", "res-1", "res-2", "RES-3"};
  return *v;
}
const std::vector<std::string>& Priorities() {
  static const auto* v = new std::vector<std::string>{
      "low", "belowNormal", "normal", "aboveNormal", "high"};
  return *v;
}
// Extra string literals that no task has. The last is the highest code
// point, U+10FFFF, above every other string in byte order (strings in
// requests are UTF-8, and PostgreSQL stores nothing else).
const std::vector<std::string>& OtherStrings() {
  static const auto* v = new std::vector<std::string>{
      "", "a", "zzz", "agent-", "t-1", "\xf4\x8f\xbf\xbf"};
  return *v;
}

// Timestamps: a coarse grid (so that equal values and ties in an ordering
// are common) around 2026, plus instants before the epoch (negative micros).
const absl::Time kBase = absl::FromUnixSeconds(1'790'000'000);
absl::Time GridTime(int step) { return kBase + absl::Hours(step); }
const std::vector<absl::Time>& OddTimes() {
  static const auto* v = new std::vector<absl::Time>{
      absl::FromUnixSeconds(-86'400), absl::FromUnixMicros(-1),
      absl::FromUnixMicros(1), kBase + absl::Microseconds(123'457)};
  return *v;
}

uint64_t SeedFromEnvironment() {
  const char* text = std::getenv("TASKD_QUERY_SEED");
  uint64_t seed = 0;
  if (text != nullptr && absl::SimpleAtoi(text, &seed)) return seed;
  return std::random_device()();
}

class Random {
 public:
  explicit Random(uint64_t seed) : engine_(seed) {}
  int Uniform(int n) {  // [0, n)
    return std::uniform_int_distribution<int>(0, n - 1)(engine_);
  }
  bool OneIn(int n) { return Uniform(n) == 0; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Uniform(static_cast<int>(v.size()))];
  }

 private:
  std::mt19937_64 engine_;
};

// ---- Filter generation ----------------------------------------------------

// A generated filter: its text and what it means, evaluated without the
// parser. `level` is how loosely the text binds at its top: 0 for a
// conjunction, 1 for a disjunction, 2 for anything atomic (a condition, a
// negation, a parenthesised group).
struct Generated {
  std::string text;
  std::function<bool(const Task&)> holds;
  int level = 2;
};

std::string QuoteString(const std::string& value) {
  std::string quoted = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') quoted.push_back('\\');
    quoted.push_back(c);
  }
  return quoted + "\"";
}

// Bare words are [A-Za-z0-9_.][A-Za-z0-9_.-]* and not a keyword.
bool CanBeBare(const std::string& value) {
  if (value.empty() || value == "AND" || value == "OR" || value == "NOT") {
    return false;
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    const bool word = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                      (c >= '0' && c <= '9') || c == '_' || c == '.';
    if (!word && !(i > 0 && c == '-')) return false;
  }
  return true;
}

std::string Literal(Random& rng, const std::string& value) {
  return CanBeBare(value) && rng.OneIn(2) ? value : QuoteString(value);
}

std::string TimeLiteral(Random& rng, absl::Time t) {
  // The same instant in UTC ("Z" or "+00:00") or in another zone.
  const absl::TimeZone zone =
      rng.OneIn(3) ? absl::FixedTimeZone((rng.Uniform(27) - 13) * 3600)
                   : absl::UTCTimeZone();
  std::string text = absl::FormatTime(absl::RFC3339_full, t, zone);
  if (zone == absl::UTCTimeZone() && rng.OneIn(2)) {
    // RFC3339_full prints UTC as "+00:00"; "Z" is the common spelling.
    text = text.substr(0, text.size() - 6) + "Z";
  }
  return QuoteString(text);
}

bool Compare(int64_t a, Comparator cmp, int64_t b) {
  switch (cmp) {
    case Comparator::kEq:
      return a == b;
    case Comparator::kNe:
      return a != b;
    case Comparator::kLt:
      return a < b;
    case Comparator::kLe:
      return a <= b;
    case Comparator::kGt:
      return a > b;
    case Comparator::kGe:
      return a >= b;
  }
  return false;
}

bool Compare(const std::string& a, Comparator cmp, const std::string& b) {
  const int c = a.compare(b);
  return Compare(int64_t{c < 0 ? -1 : (c > 0 ? 1 : 0)}, cmp, int64_t{0});
}

// The oracle's own reading of a task's fields: (is set, value).
struct Reading {
  bool set = false;
  int64_t number = 0;
  std::string text;
};

bool TimestampSet(const Task& task, TaskField field) {
  switch (field) {
    case TaskField::kEnqueuedAt:
      return task.has_enqueued_at();
    case TaskField::kStartedAt:
      return task.has_started_at();
    case TaskField::kCompletedAt:
      return task.has_completed_at();
    case TaskField::kUpdatedAt:
      return task.has_updated_at();
    case TaskField::kAssignedAt:
      return task.has_assigned_at();
    case TaskField::kDeadline:
      return task.has_deadline();
    default:
      return false;
  }
}

Reading Read(const Task& task, const FieldInfo& info) {
  Reading r;
  switch (info.kind) {
    case FieldKind::kString:
      r.text = std::get<std::string>(FieldValueOf(task, info.field));
      r.set = !r.text.empty();
      break;
    case FieldKind::kState:
      r.number = task.state();
      r.set = r.number != 0;
      break;
    case FieldKind::kResultCode:
      r.number = task.result_code();
      r.set = r.number != 0;
      break;
    case FieldKind::kPriority: {
      const auto& names = Priorities();
      auto it = std::find(names.begin(), names.end(), task.priority());
      r.number = it == names.end() ? 0 : (it - names.begin()) + 1;
      r.set = r.number != 0;
      break;
    }
    case FieldKind::kTimestamp:
      r.set = TimestampSet(task, info.field);
      r.number = std::get<int64_t>(FieldValueOf(task, info.field));
      break;
    case FieldKind::kInt64:
      r.number = info.field == TaskField::kAssignCount ? task.assign_count()
                                                       : task.revision();
      r.set = r.number != 0;
      break;
    case FieldKind::kBool:
      r.number = task.cancel_requested() ? 1 : 0;
      r.set = r.number != 0;
      break;
  }
  return r;
}

const char* ComparatorText(Comparator cmp) {
  static const char* const kTexts[] = {"=", "!=", "<", "<=", ">", ">="};
  return kTexts[static_cast<int>(cmp)];
}

// One condition: `field:*` or `field <cmp> literal`, with its meaning.
Generated GenerateCondition(Random& rng) {
  const FieldInfo& info = rng.Pick(AllTaskFields());
  const std::string name = rng.OneIn(2) ? info.proto_name : info.json_name;
  Generated g;
  if (rng.OneIn(8)) {
    g.text = absl::StrCat(name, rng.OneIn(2) ? ":*" : " : *");
    g.holds = [&info](const Task& t) { return Read(t, info).set; };
    return g;
  }
  const Comparator cmp = static_cast<Comparator>(rng.Uniform(6));
  const char* spacing = rng.OneIn(4) ? "" : " ";
  std::string literal;
  // Whether a comparison on an unset value holds: only != does (see
  // query/filter.h); strings and revision have no "unset".
  const bool has_unset = info.kind != FieldKind::kString &&
                         info.kind != FieldKind::kInt64 &&
                         info.kind != FieldKind::kBool;
  if (info.kind == FieldKind::kString) {
    std::vector<std::string> pool;
    switch (info.field) {
      case TaskField::kType:
        pool = Types();
        break;
      case TaskField::kTenantId:
        pool = Tenants();
        break;
      case TaskField::kPolicyId:
        pool = Policies();
        break;
      case TaskField::kExecutorId:
        pool = Executors();
        break;
      case TaskField::kResourceId:
        pool = Resources();
        break;
      default:  // id, uuid: literals near the generated ones
        pool = {"t-010", "t-1",        "t-150",
                "t-299", "\xc3\xa9-5", "00000000-0000-4000-8000-000000000100"};
        break;
    }
    const std::string value =
        rng.OneIn(5) ? rng.Pick(OtherStrings()) : rng.Pick(pool);
    literal = Literal(rng, value);
    g.holds = [&info, cmp, value](const Task& t) {
      return Compare(Read(t, info).text, cmp, value);
    };
  } else {
    int64_t value = 0;
    switch (info.kind) {
      case FieldKind::kState:
        value = 1 + rng.Uniform(5);
        literal =
            Literal(rng, Task::State_Name(static_cast<Task::State>(value)));
        break;
      case FieldKind::kResultCode:
        value = 1 + rng.Uniform(6);
        literal = Literal(
            rng, Task::ResultCode_Name(static_cast<Task::ResultCode>(value)));
        break;
      case FieldKind::kPriority:
        value = 1 + rng.Uniform(5);
        literal = Literal(rng, Priorities()[value - 1]);
        break;
      case FieldKind::kTimestamp: {
        absl::Time t;
        switch (rng.Uniform(4)) {
          case 0:
            t = rng.Pick(OddTimes());
            break;
          case 1:  // the epoch: the one instant that reads as "unset"
            t = rng.OneIn(4) ? absl::UnixEpoch()
                             : GridTime(rng.Uniform(40) - 5) +
                                   absl::Seconds(rng.Uniform(3) - 1);
            break;
          default:
            t = GridTime(rng.Uniform(40) - 5);
            break;
        }
        value = absl::ToUnixMicros(t);
        literal = TimeLiteral(rng, t);
        break;
      }
      case FieldKind::kBool:
        value = rng.Uniform(2);
        literal = value ? "true" : "false";
        break;
      default:  // revision, assign_count
        value = rng.Uniform(kTasks + 20) - 10;
        literal = rng.OneIn(3) ? QuoteString(absl::StrCat(value))
                               : absl::StrCat(value);
        break;
    }
    g.holds = [&info, cmp, value, has_unset](const Task& t) {
      const Reading r = Read(t, info);
      if (has_unset && !r.set && cmp != Comparator::kNe) return false;
      // Unset reads as 0, which is also what != compares against.
      return Compare(r.number, cmp, value);
    };
  }
  g.text = absl::StrCat(name, spacing, ComparatorText(cmp), spacing, literal);
  return g;
}

Generated Parenthesize(Generated g) {
  g.text = absl::StrCat("(", g.text, ")");
  g.level = 2;
  return g;
}

Generated GenerateFilter(Random& rng, int depth) {
  const int choice = depth >= 4 ? 0 : rng.Uniform(10);
  switch (choice) {
    case 0:
    case 1:
    case 2:
      return GenerateCondition(rng);
    case 3:
    case 4: {  // conjunction: explicit AND or juxtaposition
      Generated a = GenerateFilter(rng, depth + 1);
      Generated b = GenerateFilter(rng, depth + 1);
      Generated g;
      g.text = absl::StrCat(a.text, rng.OneIn(3) ? " " : " AND ", b.text);
      g.holds = [a = a.holds, b = b.holds](const Task& t) {
        return a(t) && b(t);
      };
      g.level = 0;
      return g;
    }
    case 5:
    case 6: {  // disjunction: a conjunction operand needs parentheses
      Generated a = GenerateFilter(rng, depth + 1);
      Generated b = GenerateFilter(rng, depth + 1);
      if (a.level < 1) a = Parenthesize(std::move(a));
      if (b.level < 1) b = Parenthesize(std::move(b));
      Generated g;
      g.text = absl::StrCat(a.text, " OR ", b.text);
      g.holds = [a = a.holds, b = b.holds](const Task& t) {
        return a(t) || b(t);
      };
      g.level = 1;
      return g;
    }
    case 7:
    case 8: {  // negation: applies to one atom
      Generated a = GenerateFilter(rng, depth + 1);
      if (a.level < 2) a = Parenthesize(std::move(a));
      Generated g;
      g.text = absl::StrCat(rng.OneIn(2) ? "NOT " : (rng.OneIn(2) ? "-" : "- "),
                            a.text);
      g.holds = [a = a.holds](const Task& t) { return !a(t); };
      g.level = 2;
      return g;
    }
    default:  // redundant parentheses
      return Parenthesize(GenerateFilter(rng, depth + 1));
  }
}

std::string GenerateOrderBy(Random& rng) {
  std::vector<const FieldInfo*> orderable;
  for (const FieldInfo& info : AllTaskFields()) {
    if (info.orderable) orderable.push_back(&info);
  }
  std::shuffle(orderable.begin(), orderable.end(),
               std::mt19937(rng.Uniform(1 << 30)));
  const int keys = 1 + rng.Uniform(3);
  std::vector<std::string> parts;
  for (int i = 0; i < keys; ++i) {
    const FieldInfo& info = *orderable[i];
    std::string part = rng.OneIn(2) ? info.proto_name : info.json_name;
    switch (rng.Uniform(4)) {
      case 0:
        part += " desc";
        break;
      case 1:
        part += " asc";
        break;
      case 2:
        part += rng.OneIn(2) ? " DESC" : " desc";
        break;
      default:
        break;
    }
    parts.push_back(part);
  }
  return absl::StrJoin(parts, ", ");
}

// ---- The test --------------------------------------------------------------

class QueryDifferentialTest : public ::testing::TestWithParam<testing::Engine> {
 protected:
  QueryDifferentialTest() : temp_(GetParam()) {}

  void SetUp() override {
    seed_ = SeedFromEnvironment();
    std::printf("TASKD_QUERY_SEED=%llu\n",
                static_cast<unsigned long long>(seed_));
    temp_.options.synchronous_full = false;
    absl::Status opened = temp_.Open();
    TASKD_SKIP_WITHOUT_POSTGRES(opened);
    Random rng(seed_);
    std::set<std::string> ids;
    for (int i = 0; i < kTasks; ++i) {
      Task task = RandomTask(rng, i);
      if (!ids.insert(task.id()).second) continue;
      absl::StatusOr<Task> created = store_->Create(task, "");
      ASSERT_TRUE(created.ok()) << created.status();
    }
    // The truth is what the store returns, so that the in-memory side sees
    // exactly the values SQLite compares.
    tasks_ = ListAll(nullptr, ParseOrderBy("id").value(), 1000);
    ASSERT_EQ(tasks_.size(), ids.size());
  }

  Task RandomTask(Random& rng, int i) {
    Task task;
    // Ids sort differently from creation order; a few are not ASCII.
    task.set_id(rng.OneIn(20) ? absl::StrCat("\xc3\xa9-", i)
                              : absl::StrCat("t-", rng.Uniform(1000)));
    task.set_uuid(absl::StrCat("00000000-0000-4000-8000-",
                               100000000000 + static_cast<int64_t>(i)));
    task.set_type(rng.Pick(Types()));
    // State and result code 0 ("unset") are rare but possible in a store.
    task.set_state(
        static_cast<Task::State>(rng.OneIn(15) ? 0 : 1 + rng.Uniform(5)));
    task.set_result_code(static_cast<Task::ResultCode>(rng.Uniform(7)));
    task.set_priority(rng.OneIn(15) ? "" : rng.Pick(Priorities()));
    task.set_tenant_id(rng.Pick(Tenants()));
    task.set_policy_id(rng.Pick(Policies()));
    task.set_executor_id(rng.Pick(Executors()));
    task.set_resource_id(rng.Pick(Resources()));
    task.set_assign_count(static_cast<int32_t>(rng.Uniform(4)));
    task.set_cancel_requested(rng.OneIn(3));
    google::protobuf::Timestamp* (Task::*times[])() = {
        &Task::mutable_enqueued_at,  &Task::mutable_started_at,
        &Task::mutable_completed_at, &Task::mutable_updated_at,
        &Task::mutable_assigned_at,  &Task::mutable_deadline};
    for (auto mutable_time : times) {
      if (rng.OneIn(3)) continue;  // unset
      const absl::Time t =
          rng.OneIn(10) ? rng.Pick(OddTimes()) : GridTime(rng.Uniform(30));
      *(task.*mutable_time)() = ToTimestamp(t);
    }
    return task;
  }

  // Every task the store lists for (filter, order), page by page.
  std::vector<Task> ListAll(std::shared_ptr<const FilterExpr> filter,
                            const OrderBy& order, int page_size) {
    std::vector<Task> all;
    ListQuery query;
    query.filter = std::move(filter);
    query.order = order;
    query.limit = page_size;
    for (int pages = 0; pages <= kTasks + 1; ++pages) {
      absl::StatusOr<ListResult> page = store_->List(query);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      EXPECT_LE(static_cast<int>(page->tasks.size()), page_size);
      for (Task& task : page->tasks) all.push_back(std::move(task));
      if (!page->more) return all;
      EXPECT_FALSE(page->tasks.empty()) << "more, but an empty page";
      if (all.empty()) break;
      query.after = CursorOf(order, all.back());
    }
    ADD_FAILURE() << "paging did not end";
    return all;
  }

  static std::vector<std::string> Ids(const std::vector<Task>& tasks) {
    std::vector<std::string> ids;
    for (const Task& task : tasks) ids.push_back(task.id());
    return ids;
  }

  std::vector<Task> SortInMemory(std::vector<Task> tasks,
                                 const OrderBy& order) {
    std::sort(tasks.begin(), tasks.end(),
              [&order](const Task& a, const Task& b) {
                for (const OrderKey& key : order) {
                  const FieldValue va = FieldValueOf(a, key.field);
                  const FieldValue vb = FieldValueOf(b, key.field);
                  if (va == vb) continue;
                  return key.descending ? vb < va : va < vb;
                }
                return false;
              });
    return tasks;
  }

  int PageSize(Random& rng) {
    switch (rng.Uniform(4)) {
      case 0:
        return 1 + rng.Uniform(3);
      case 1:
        return 1000;
      default:
        return 1 + rng.Uniform(60);
    }
  }

  uint64_t seed_ = 0;
  testing::TempStore temp_;
  std::unique_ptr<TaskStore>& store_ = temp_.store;
  std::vector<Task> tasks_;  // as stored, in id order
};

// Every engine: the SQL of each dialect against the same in-memory truth.
INSTANTIATE_TEST_SUITE_P(
    Engines, QueryDifferentialTest,
    ::testing::Values(testing::Engine::kSqlite, testing::Engine::kPostgres),
    [](const ::testing::TestParamInfo<testing::Engine>& info) {
      return testing::EngineName(info.param);
    });

TEST_P(QueryDifferentialTest, SqlAndMatchesSelectTheSameTasks) {
  SCOPED_TRACE(absl::StrCat("TASKD_QUERY_SEED=", seed_));
  Random rng(seed_ ^ 0x5eed);
  const OrderBy by_id = ParseOrderBy("id").value();
  int partial = 0;
  for (int i = 0; i < kFilters && !HasFailure(); ++i) {
    const Generated generated = GenerateFilter(rng, 0);
    SCOPED_TRACE(absl::StrCat("filter: ", generated.text));
    absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
        ParseFilter(generated.text);
    ASSERT_TRUE(filter.ok()) << filter.status();
    ASSERT_NE(*filter, nullptr);

    std::vector<std::string> matching, meant;
    for (const Task& task : tasks_) {
      if (Matches(filter->get(), task)) matching.push_back(task.id());
      if (generated.holds(task)) meant.push_back(task.id());
    }
    // tasks_ is in id order, and so is the listing.
    EXPECT_EQ(Ids(ListAll(*filter, by_id, PageSize(rng))), matching);
    EXPECT_EQ(matching, meant) << "the parser read the filter differently";
    partial += !matching.empty() && matching.size() < tasks_.size();
  }
  // The generator is only useful if its filters split the tasks.
  EXPECT_GT(partial, kFilters / 3);
  std::printf("%d of %d filters matched some but not all tasks\n", partial,
              kFilters);
}

// A filter over only the fields the store keeps counters for (tenant,
// state, result code), so that Count answers it from the counters.
std::string CounterFilter(Random& rng, int depth) {
  if (depth < 2 && rng.OneIn(3)) {
    return absl::StrCat("(", CounterFilter(rng, depth + 1),
                        rng.OneIn(2) ? " AND " : " OR ",
                        CounterFilter(rng, depth + 1), ")");
  }
  if (depth < 2 && rng.OneIn(6)) {
    return absl::StrCat("NOT ", CounterFilter(rng, depth + 1));
  }
  static const char* kOps[] = {"=", "!=", "<", ">="};
  switch (rng.Uniform(3)) {
    case 0:
      return absl::StrCat(
          "state ", kOps[rng.Uniform(4)], " ",
          Task::State_Name(static_cast<Task::State>(1 + rng.Uniform(5))));
    case 1:
      return absl::StrCat("result_code ", kOps[rng.Uniform(2)], " ",
                          Task::ResultCode_Name(static_cast<Task::ResultCode>(
                              1 + rng.Uniform(6))));
    default:
      return absl::StrCat("tenant_id = ", QuoteString(rng.Pick(Tenants())));
  }
}

// Every filter's count, grouped by random fields, against the in-memory
// count of the tasks the filter matches; then the same after a random run
// of updates and deletions, which the store's counters must follow.
TEST_P(QueryDifferentialTest, CountsAgreeWithTheInMemoryCount) {
  SCOPED_TRACE(absl::StrCat("TASKD_QUERY_SEED=", seed_));
  Random rng(seed_ ^ 0xc0417);
  const std::vector<TaskField> groupable = {
      TaskField::kState,    TaskField::kResultCode, TaskField::kType,
      TaskField::kPriority, TaskField::kTenantId,   TaskField::kExecutorId};
  const std::vector<TaskField> counted = {
      TaskField::kState, TaskField::kResultCode, TaskField::kTenantId};
  auto check_all = [&](int rounds) {
    for (int i = 0; i < rounds && !HasFailure(); ++i) {
      // Half the questions are what the counters answer.
      const bool from_counters = rng.OneIn(2);
      std::string text;
      if (!rng.OneIn(8)) {
        text =
            from_counters ? CounterFilter(rng, 0) : GenerateFilter(rng, 0).text;
      }
      std::vector<TaskField> group_by;
      const std::vector<TaskField>& pool = from_counters ? counted : groupable;
      for (int n = rng.Uniform(3); n > 0; --n) {
        TaskField field = rng.Pick(pool);
        if (std::find(group_by.begin(), group_by.end(), field) ==
            group_by.end()) {
          group_by.push_back(field);
        }
      }
      SCOPED_TRACE(
          absl::StrCat("filter: ", text, " groups: ", group_by.size()));
      absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
          ParseFilter(text);
      ASSERT_TRUE(filter.ok()) << filter.status();
      TaskCounts expected(group_by);
      for (const Task& task : tasks_) {
        if (Matches(filter->get(), task)) expected.Add(task, 1);
      }
      absl::StatusOr<CountResult> counted_now =
          store_->Count(CountQuery{*filter, group_by});
      ASSERT_TRUE(counted_now.ok()) << counted_now.status();
      EXPECT_EQ(counted_now->groups, expected.groups());
      EXPECT_EQ(counted_now->revision, store_->CurrentRevision());
    }
  };
  check_all(400);
  // Moves between groups (state, result, tenant), changes of other fields,
  // deletions.
  for (int i = 0; i < 300; ++i) {
    const Task& victim = rng.Pick(tasks_);
    if (rng.OneIn(6)) {
      ASSERT_TRUE(store_->Delete(victim.id(), nullptr).ok());
    } else {
      const int what = rng.Uniform(4);
      const auto state = static_cast<Task::State>(1 + rng.Uniform(5));
      const auto result = static_cast<Task::ResultCode>(rng.Uniform(7));
      const std::string tenant = rng.Pick(Tenants());
      const std::string type = rng.Pick(Types());
      absl::StatusOr<Task> updated = store_->Update(
          victim.id(), [=](const Task& current) -> absl::StatusOr<Task> {
            Task next = current;
            if (what == 0) next.set_state(state);
            if (what == 1) next.set_result_code(result);
            if (what == 2) next.set_tenant_id(tenant);
            next.set_type(type);
            return next;
          });
      if (!updated.ok()) {
        ASSERT_EQ(updated.status().code(), absl::StatusCode::kNotFound);
      }
    }
    tasks_ = ListAll(nullptr, ParseOrderBy("id").value(), 1000);
  }
  check_all(400);
}

TEST_P(QueryDifferentialTest, PagesConcatenateToTheInMemorySort) {
  SCOPED_TRACE(absl::StrCat("TASKD_QUERY_SEED=", seed_));
  Random rng(seed_ ^ 0x0bde);
  for (int i = 0; i < kOrderedListings && !HasFailure(); ++i) {
    const std::string order_text = GenerateOrderBy(rng);
    const Generated generated =
        rng.OneIn(4) ? Generated{} : GenerateFilter(rng, 1);
    SCOPED_TRACE(
        absl::StrCat("order_by: ", order_text, "; filter: ", generated.text));
    absl::StatusOr<OrderBy> order = ParseOrderBy(order_text);
    ASSERT_TRUE(order.ok()) << order.status();
    absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
        ParseFilter(generated.text);
    ASSERT_TRUE(filter.ok()) << filter.status();

    std::vector<Task> matching;
    for (const Task& task : tasks_) {
      if (Matches(filter->get(), task)) matching.push_back(task);
    }
    EXPECT_EQ(Ids(ListAll(*filter, *order, PageSize(rng))),
              Ids(SortInMemory(matching, *order)));
  }
}

// The largest filters the limits allow still run in SQLite (whose expression
// depth limit is 1000) and agree with Matches().
TEST_P(QueryDifferentialTest, FiltersAtTheLimitsRunInSqlite) {
  const OrderBy by_id = ParseOrderBy("id").value();
  std::vector<std::string> texts;
  // 256 conditions that each gain a presence guard, joined by AND, by OR,
  // and alternately.
  for (const char* joiner : {" AND ", " OR ", " "}) {
    std::vector<std::string> conditions;
    for (int i = 0; i < 256; ++i) {
      conditions.push_back(
          absl::StrCat(i % 2 ? "completedAt < " : "state <= ",
                       i % 2 ? "\"2026-09-20T00:00:00Z\"" : "paused"));
    }
    texts.push_back(absl::StrJoin(conditions, joiner));
  }
  // 64 levels of nesting, alternating NOT and parentheses around ORs.
  std::string nested = "startedAt <= \"2026-09-20T00:00:00Z\"";
  for (int i = 0; i < 32; ++i) {
    nested = absl::StrCat("NOT (", nested, " OR priority < normal)");
  }
  texts.push_back(nested);
  for (const std::string& text : texts) {
    SCOPED_TRACE(text.substr(0, 80));
    absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
        ParseFilter(text);
    ASSERT_TRUE(filter.ok()) << filter.status();
    std::vector<std::string> matching;
    for (const Task& task : tasks_) {
      if (Matches(filter->get(), task)) matching.push_back(task.id());
    }
    EXPECT_EQ(Ids(ListAll(*filter, by_id, 50)), matching);
  }
}

}  // namespace
}  // namespace taskd
