// libFuzzer target: sequences of TaskService requests, decoded from the fuzz
// input and run through the service logic (TaskService::Create, Get, List,
// Update, Delete and the life-cycle moves, as the RPCs call them) against a
// real SQLite store. Built and run by scripts/fuzz-requests.
//
// Input: a sequence of records
//   byte   op      which request (op % 13; 11 is ListTasks continuing the
//                  last page token, 12 CountTasks)
//   byte   flags   bit 0: replace the request's task id with one of the
//                         tasks created so far (bits 1-3 pick which);
//                  bit 4: replace the etag with that task's current etag;
//                  bit 5: call as a tenant-scoped caller rather than the
//                         open admin;
//                  bit 6: (CountTasks) group by tenant_id only;
//   u16 le length, then that many bytes: the serialized request. Bytes that
//                  do not parse are skipped, as gRPC would refuse them.
// Each input gets a fresh store (a copy of an empty database) and a fake
// clock, so that a finding replays exactly.
//
// Checked after every call, beyond "no crash, no sanitizer report":
//   - no call fails with INTERNAL, UNKNOWN or DATA_LOSS (those mean a bug,
//     not a bad request);
//   - a write that succeeds takes exactly the next revision (or, for a
//     create retried with its request_id, none) and is what Get then
//     returns; a call that fails changes no revision;
//   - a list page holds at most page_size tasks, each matching the filter
//     (evaluated in memory), in the requested order, and only the caller's
//     tenant's tasks; Get returns only the caller's tenant's task;
//   - a count reflects the store's current revision, holds no empty group
//     and, grouped by tenant for a scoped caller, only the caller's tenant.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "query/filter.h"
#include "query/order_by.h"
#include "server/auth.h"
#include "server/task_service.h"
#include "storage/sqlite_task_store.h"

namespace taskd {
namespace {

using google::protobuf::util::MessageDifferencer;

constexpr char kTenant[] = "aaaaaaaa-0000-4000-8000-000000000001";

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "request_fuzzer: %s\n", what.c_str());
  std::abort();
}

// The fuzzer's scratch directory (tmpfs when there is one) and an empty,
// already migrated database that every input starts from.
struct Scratch {
  std::string dir;
  std::string template_db;
  std::string db;

  Scratch() {
    std::string base =
        std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    if (const char* tmp = std::getenv("FUZZ_TMPDIR")) base = tmp;
    // Directories left by fuzzers that crashed (their process is gone).
    std::error_code ignored;
    for (const auto& entry :
         std::filesystem::directory_iterator(base, ignored)) {
      std::string name = entry.path().filename().string();
      int pid = 0;
      if (sscanf(name.c_str(), "taskd-request-fuzzer-%d", &pid) == 1 &&
          kill(pid, 0) != 0 && errno == ESRCH) {
        std::filesystem::remove_all(entry.path(), ignored);
      }
    }
    dir = absl::StrCat(base, "/taskd-request-fuzzer-", getpid());
    std::filesystem::create_directories(dir);
    template_db = dir + "/template.db";
    db = dir + "/fuzz.db";
    SqliteTaskStoreOptions options;
    options.path = template_db;
    options.synchronous_full = false;
    absl::StatusOr<std::unique_ptr<TaskStore>> store =
        OpenSqliteTaskStore(options);
    if (!store.ok()) Fail(store.status().ToString());
    // Closing checkpoints: the template is one self-contained file.
  }
};

Scratch& GetScratch() {
  // Never destroyed (the fuzzer may exit from any thread); the directory
  // goes at exit.
  static Scratch* scratch = [] {
    auto* s = new Scratch();
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(GetScratch().dir, ignored);
    });
    return s;
  }();
  return *scratch;
}

// Reads the next record; false at the end of the input.
struct Record {
  uint8_t op = 0;
  uint8_t flags = 0;
  const uint8_t* bytes = nullptr;
  size_t size = 0;
};
bool NextRecord(const uint8_t** data, size_t* size, Record* record) {
  if (*size < 4) return false;
  record->op = (*data)[0];
  record->flags = (*data)[1];
  size_t length = (*data)[2] | (static_cast<size_t>((*data)[3]) << 8);
  *data += 4;
  *size -= 4;
  if (length > *size) length = *size;
  record->bytes = *data;
  record->size = length;
  *data += length;
  *size -= length;
  return true;
}

// a < b in `order` (descending keys inverted).
bool Before(const OrderBy& order, const std::vector<FieldValue>& a,
            const std::vector<FieldValue>& b) {
  for (size_t i = 0; i < order.size(); ++i) {
    if (a[i] == b[i]) continue;
    return order[i].descending ? b[i] < a[i] : a[i] < b[i];
  }
  return false;
}

class Session {
 public:
  // No WatchHub, CountHub, Dispatcher or TaskTimers: only the streams,
  // AcquireTask and heartbeat renewals use them, and those are not called
  // here.
  Session(TaskStore* store, Clock* clock)
      : store_(store),
        service_(store, /*watch_hub=*/nullptr, /*count_hub=*/nullptr,
                 /*dispatcher=*/nullptr,
                 /*timers=*/nullptr, &authorizer_, [clock] {
                   TaskServiceOptions options;
                   options.clock = clock;
                   options.max_page_size = 20;
                   return options;
                 }()) {
    scoped_.tenant = kTenant;
  }

  void Run(const Record& record) {
    const Caller& caller = (record.flags & 0x20) ? scoped_ : open_;
    // The task a flagged record refers to.
    const Task* target = nullptr;
    if ((record.flags & 0x01) && !created_.empty()) {
      const std::string& id =
          created_[(record.flags >> 1 & 7) % created_.size()];
      absl::StatusOr<Task> current = store_->Get(id);
      if (current.ok()) {
        target_ = *current;
        target = &target_;
      }
    }
    auto substitute = [&](std::string* id, std::string* etag) {
      if (target == nullptr) return;
      *id = target->id();
      if (etag != nullptr && (record.flags & 0x10)) *etag = target->etag();
    };
    const int64_t before = store_->CurrentRevision();
    switch (record.op % 13) {
      case 0: {
        tasks::v1::CreateTaskRequest request;
        if (!Parse(record, &request)) return;
        absl::StatusOr<Task> task = service_.Create(request, caller);
        Check(task.status(), "Create");
        if (!task.ok()) return ExpectRevision(before, "failed Create");
        if (task->revision() <= before) {
          // Only a retry with the same request_id returns an old task.
          if (request.request_id().empty()) Fail("Create wrote nothing");
          ExpectRevision(before, "Create retried by request_id");
        } else {
          Written(before, *task, "Create");
          created_.push_back(task->id());
        }
        return;
      }
      case 1: {
        tasks::v1::GetTaskRequest request;
        if (!Parse(record, &request)) return;
        substitute(request.mutable_id(), nullptr);
        absl::StatusOr<Task> task = service_.Get(request, caller);
        Check(task.status(), "Get");
        if (task.ok() && caller.scoped() && task->tenant_id() != kTenant) {
          Fail("Get returned another tenant's task");
        }
        return ExpectRevision(before, "Get");
      }
      case 2:
      case 11: {
        tasks::v1::ListTasksRequest request;
        if (!Parse(record, &request)) return;
        if (record.op % 13 == 11) request.set_page_token(last_page_token_);
        absl::StatusOr<tasks::v1::ListTasksResponse> page =
            service_.List(request, caller);
        Check(page.status(), "List");
        if (page.ok()) {
          CheckPage(request, caller, *page);
          last_page_token_ = page->next_page_token();
        }
        return ExpectRevision(before, "List");
      }
      case 3: {
        tasks::v1::UpdateTaskRequest request;
        if (!Parse(record, &request)) return;
        substitute(request.mutable_task()->mutable_id(),
                   request.mutable_etag());
        return Wrote(before, service_.Update(request, caller), "Update");
      }
      case 4: {
        tasks::v1::DeleteTaskRequest request;
        if (!Parse(record, &request)) return;
        substitute(request.mutable_id(), request.mutable_etag());
        absl::Status status = service_.Delete(request, caller);
        Check(status, "Delete");
        if (!status.ok()) return ExpectRevision(before, "failed Delete");
        ExpectRevision(before + 1, "Delete");
        if (store_->Get(request.id()).ok() && target != nullptr &&
            request.id() == target->id()) {
          Fail("a deleted task is still there");
        }
        return;
      }
      case 5: {
        tasks::v1::AssignTaskRequest request;
        if (!Parse(record, &request)) return;
        substitute(request.mutable_id(), request.mutable_etag());
        absl::StatusOr<Task> assigned = service_.Assign(request, caller);
        if (assigned.ok()) leases_[assigned->id()] = assigned->lease_token();
        return Wrote(before, assigned, "Assign");
      }
      case 6: {
        tasks::v1::StartTaskRequest request;
        if (!Parse(record, &request)) return;
        substitute(request.mutable_id(), request.mutable_etag());
        Lease(request.id(), request.mutable_lease_token());
        return Wrote(before, service_.Start(request, caller), "Start");
      }
      case 7: {
        tasks::v1::PauseTaskRequest request;
        if (!Parse(record, &request)) return;
        substitute(request.mutable_id(), request.mutable_etag());
        Lease(request.id(), request.mutable_lease_token());
        return Wrote(before, service_.Pause(request, caller), "Pause");
      }
      case 8: {
        tasks::v1::ResumeTaskRequest request;
        if (!Parse(record, &request)) return;
        substitute(request.mutable_id(), request.mutable_etag());
        Lease(request.id(), request.mutable_lease_token());
        return Wrote(before, service_.Resume(request, caller), "Resume");
      }
      case 9: {
        tasks::v1::CompleteTaskRequest request;
        if (!Parse(record, &request)) return;
        substitute(request.mutable_id(), request.mutable_etag());
        Lease(request.id(), request.mutable_lease_token());
        return Wrote(before, service_.Complete(request, caller), "Complete");
      }
      case 10: {
        tasks::v1::CancelTaskRequest request;
        if (!Parse(record, &request)) return;
        substitute(request.mutable_id(), request.mutable_etag());
        return Wrote(before, service_.Cancel(request, caller), "Cancel");
      }
      case 12: {
        tasks::v1::CountTasksRequest request;
        if (!Parse(record, &request)) return;
        if (record.flags & 0x40) {
          request.clear_group_by();
          request.add_group_by("tenant_id");
        }
        absl::StatusOr<tasks::v1::CountTasksResponse> counted =
            service_.Count(request, caller);
        Check(counted.status(), "Count");
        if (counted.ok()) {
          if (counted->revision() != before) {
            Fail("Count's revision is not the store's");
          }
          const bool by_tenant = request.group_by_size() == 1 &&
                                 request.group_by(0) == "tenant_id";
          for (const tasks::v1::TaskCount& group : counted->groups()) {
            if (group.count() <= 0) Fail("Count returned an empty group");
            if (by_tenant && caller.scoped() && group.values(0) != kTenant) {
              Fail("Count counted another tenant's tasks");
            }
          }
        }
        return ExpectRevision(before, "Count");
      }
    }
  }

 private:
  // An empty lease token becomes the last one an assignment of that task
  // returned, so that the moves get past the lease check.
  void Lease(const std::string& id, std::string* token) {
    auto it = leases_.find(id);
    if (token->empty() && it != leases_.end()) *token = it->second;
  }

  template <typename Message>
  static bool Parse(const Record& record, Message* message) {
    return message->ParseFromArray(record.bytes, static_cast<int>(record.size));
  }

  // Codes that mean the server is wrong, whatever the request.
  static void Check(const absl::Status& status, const char* call) {
    switch (status.code()) {
      case absl::StatusCode::kInternal:
      case absl::StatusCode::kUnknown:
      case absl::StatusCode::kDataLoss:
        Fail(absl::StrCat(call, ": ", status.ToString()));
      default:
        return;
    }
  }

  void ExpectRevision(int64_t expected, const char* what) {
    if (store_->CurrentRevision() != expected) {
      Fail(absl::StrCat(what, ": revision ", store_->CurrentRevision(),
                        ", expected ", expected));
    }
  }

  void Written(int64_t before, const Task& task, const char* call) {
    if (task.revision() != before + 1) {
      Fail(absl::StrCat(call, " wrote revision ", task.revision(), " after ",
                        before));
    }
    ExpectRevision(before + 1, call);
    absl::StatusOr<Task> stored = store_->Get(task.id());
    if (!stored.ok()) Fail(absl::StrCat(call, ": written task is missing"));
    // An assignment's answer carries its lease token, which is never stored.
    Task returned = task;
    returned.clear_lease_token();
    if (!MessageDifferencer::Equals(*stored, returned)) {
      Fail(absl::StrCat(call, ": returned ", task.ShortDebugString(),
                        " but stored ", stored->ShortDebugString()));
    }
  }

  void Wrote(int64_t before, const absl::StatusOr<Task>& task,
             const char* call) {
    Check(task.status(), call);
    if (!task.ok()) return ExpectRevision(before, call);
    Written(before, *task, call);
  }

  void CheckPage(const tasks::v1::ListTasksRequest& request,
                 const Caller& caller,
                 const tasks::v1::ListTasksResponse& page) {
    int limit = request.page_size() == 0 ? 50 : request.page_size();
    if (page.tasks_size() > std::min(limit, 20)) {
      Fail(absl::StrCat("List returned ", page.tasks_size(), " tasks"));
    }
    absl::StatusOr<std::shared_ptr<const FilterExpr>> filter =
        ParseFilter(request.filter());
    absl::StatusOr<OrderBy> order = ParseOrderBy(request.order_by());
    if (!filter.ok() || !order.ok()) {
      Fail("List succeeded with a filter or order that does not parse");
    }
    for (int i = 0; i < page.tasks_size(); ++i) {
      const Task& task = page.tasks(i);
      if (!Matches(filter->get(), task)) {
        Fail(absl::StrCat("List returned a task the filter \"",
                          request.filter(),
                          "\" does not match: ", task.ShortDebugString()));
      }
      if (caller.scoped() && task.tenant_id() != kTenant) {
        Fail("List returned another tenant's task");
      }
      if (i > 0 && !Before(*order, CursorOf(*order, page.tasks(i - 1)),
                           CursorOf(*order, task))) {
        Fail(absl::StrCat("List is out of order \"", request.order_by(),
                          "\" at ", i));
      }
    }
  }

  TaskStore* const store_;
  Authorizer authorizer_;
  TaskService service_;
  std::map<std::string, std::string> leases_;
  Caller open_;
  Caller scoped_;
  std::vector<std::string> created_;
  Task target_;
  std::string last_page_token_;
};

}  // namespace
}  // namespace taskd

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  // Parsing refuses invalid UTF-8 in string fields, as gRPC would, and
  // protobuf logs each one; thousands of lines per second drown the report.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace taskd;
  Scratch& scratch = GetScratch();
  std::error_code ignored;
  std::filesystem::remove(scratch.db + "-wal", ignored);
  std::filesystem::remove(scratch.db + "-shm", ignored);
  std::filesystem::copy_file(scratch.template_db, scratch.db,
                             std::filesystem::copy_options::overwrite_existing);
  FakeClock clock(absl::FromUnixSeconds(1'800'000'000));
  SqliteTaskStoreOptions options;
  options.path = scratch.db;
  options.synchronous_full = false;
  options.read_connections = 1;
  options.clock = &clock;
  absl::StatusOr<std::unique_ptr<TaskStore>> store =
      OpenSqliteTaskStore(options);
  if (!store.ok()) Fail(store.status().ToString());
  {
    Session session(store->get(), &clock);
    Record record;
    while (NextRecord(&data, &size, &record)) {
      session.Run(record);
      clock.Advance(absl::Seconds(1));
    }
  }
  return 0;
}
