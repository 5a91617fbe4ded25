// store_bench: the write path of the SQLite TaskStore, without gRPC.
//
//   taskd_store_bench [--benchmark_filter=...] [Google Benchmark flags]
//
// Each iteration queues a batch of writes with TaskStore::Write and waits
// for all of them, so that they form one group commit (or a few: the writer
// takes what is queued when it starts). Reported per write (items/s).
// synchronous=NORMAL on a scratch file in $TMPDIR: this measures what a
// write costs in CPU, not the disk's sync latency (taskd_loadgen
// --scenario=sqlite-insert measures that).
//
// For instruction counts per write, run it under callgrind and divide the
// inclusive cost of SqliteTaskStore::ApplyBatch by the writes:
//   valgrind --tool=callgrind taskd_store_bench
//       --benchmark_filter=BM_Move/64 --benchmark_min_time=0.01  (one line)
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "benchmark/benchmark.h"
#include "query/task_fields.h"
#include "storage/sqlite_task_store.h"

namespace taskd {
namespace {

class Scratch {
 public:
  Scratch() {
    const char* tmp = getenv("TMPDIR");
    path_ = absl::StrCat(tmp ? tmp : "/tmp", "/taskd-store-bench-", getpid(),
                         ".db");
    Remove();
    SqliteTaskStoreOptions options;
    options.path = path_;
    options.synchronous_full = false;
    absl::StatusOr<std::unique_ptr<TaskStore>> store =
        OpenSqliteTaskStore(options);
    if (!store.ok()) {
      fprintf(stderr, "%s\n", store.status().ToString().c_str());
      abort();
    }
    store_ = std::move(*store);
  }
  ~Scratch() {
    store_.reset();
    Remove();
  }
  TaskStore* store() { return store_.get(); }

 private:
  void Remove() {
    for (const char* suffix : {"", "-wal", "-shm", ".lock"}) {
      std::remove((path_ + suffix).c_str());
    }
  }
  std::string path_;
  std::unique_ptr<TaskStore> store_;
};

Task NewTask(int64_t n) {
  Task task;
  // A random-looking but reproducible uuid, also the id, as taskd makes.
  uint64_t h = static_cast<uint64_t>(n) * 0x9E3779B97F4A7C15ULL;
  task.set_uuid(absl::StrCat(absl::Hex(h >> 32, absl::kZeroPad8), "-",
                             absl::Hex((h >> 16) & 0xffff, absl::kZeroPad4),
                             "-4", absl::Hex(h & 0xfff, absl::kZeroPad3),
                             "-8000-", absl::Hex(n, absl::kZeroPad12)));
  task.set_id(task.uuid());
  task.set_type("backup");
  task.set_state(Task::enqueued);
  task.set_priority("normal");
  task.set_tenant_id(absl::StrCat("3f2a9c1e-5b7d-4e8f-9a0b-",
                                  absl::Hex(n % 100, absl::kZeroPad12)));
  SetTimestampMicros(1'800'000'000'000'000 + n, task.mutable_enqueued_at());
  *task.mutable_updated_at() = task.enqueued_at();
  return task;
}

// Creates a batch of state.range(0) tasks per iteration.
void BM_Create(benchmark::State& state) {
  Scratch scratch;
  int batch = static_cast<int>(state.range(0));
  int64_t n = 0;
  for (auto _ : state) {
    absl::BlockingCounter done(batch);
    for (int i = 0; i < batch; ++i) {
      scratch.store()->Write({TaskWrite::Create{NewTask(n++), ""}},
                             [&done](absl::StatusOr<Task> result) {
                               if (!result.ok()) abort();
                               done.DecrementCount();
                             });
    }
    done.Wait();
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_Create)->Arg(1)->Arg(64)->Arg(256)->UseRealTime();

// Moves tasks through assign, start and complete, a batch of
// state.range(0) moves per iteration.
void BM_Move(benchmark::State& state) {
  Scratch scratch;
  int batch = static_cast<int>(state.range(0));
  std::vector<std::string> ids;
  for (int64_t i = 0; i < 20'000; ++i) {
    Task task = NewTask(i);
    ids.push_back(task.id());
    if (!scratch.store()->Create(task, "").ok()) abort();
  }
  const Task::State order[] = {Task::enqueued, Task::assigned, Task::started,
                               Task::completed};
  size_t next = 0;
  int step = 0;
  for (auto _ : state) {
    absl::BlockingCounter done(batch);
    for (int i = 0; i < batch; ++i) {
      if (next == ids.size()) {
        next = 0;
        if (++step == 3) step = 0;  // completed is final: start over
      }
      Task::State to = order[step + 1];
      // What the service's moves change: the state, the executor or the
      // result, and updatedAt (no life-cycle rules here, so that the rounds
      // can start over).
      TaskStore::Mutation move =
          [to](const Task& current) -> absl::StatusOr<Task> {
        Task moved = current;
        moved.set_state(to);
        if (to == Task::assigned) moved.set_executor_id("agent-7");
        if (to == Task::completed) moved.set_result_code(Task::ok);
        moved.mutable_updated_at()->set_nanos(
            (current.updated_at().nanos() + 1000) % 1'000'000'000);
        return moved;
      };
      scratch.store()->Write({TaskWrite::Update{ids[next++], std::move(move)}},
                             [&done](absl::StatusOr<Task> result) {
                               if (!result.ok()) abort();
                               done.DecrementCount();
                             });
    }
    done.Wait();
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_Move)->Arg(1)->Arg(64)->UseRealTime();

}  // namespace
}  // namespace taskd

BENCHMARK_MAIN();
