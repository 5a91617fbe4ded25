// TaskTimers: fires the task timeouts (queue, ack, heartbeat, exec) when
// they pass, and keeps the heartbeat leases.
//
// The deadlines live in the store, with the tasks (Task.deadline, kept by
// the life cycle, server/task_lifecycle.h), so they survive restarts: a
// deadline that passed while taskd was down fires at start-up, and one
// still ahead fires at its time. One thread reads the earliest deadlines
// (TaskStore::ListByDeadline: an index read of only what comes first, also
// with millions of tasks), fires those due as ordinary updates (a revision
// each, on the watch stream), and sleeps, on the injected clock, until the
// next one or until a commit brings an earlier one.
//
// Heartbeat leases are kept in memory: a heartbeat renews the lease here
// (Renew), without a store write, and the thread voids a lease when its
// end passes with no renewal. The store gets a checkpoint of a live lease
// (lease_expires_at, and a deadline kCheckpointIntervals intervals on) when
// its stored deadline comes due: about one write per ten heartbeats. After
// a restart the memory is empty: every heartbeat lease then runs one full
// lease (kHeartbeatGrace intervals) from the start, so that executors that
// heartbeated into the void while taskd was down keep their tasks, and the
// tasks of executors that are gone come back one lease after the restart.
//
// Firing is an atomic read-modify-write that looks at the task again
// (FireTimeout): a task that moved on or whose lease was renewed meanwhile
// is left alone, so running a timer late, twice, or on two servers of one
// database changes a task at most once per deadline.
//
// On a store shared by several servers (TaskStore::Shared(), replicas on
// PostgreSQL) a heartbeat may reach any server, so no server's memory knows
// every lease: each heartbeat writes its lease to the store (TaskService),
// and the timers keep nothing in memory. They run only on the server the
// store elects (TaskStore::SweeperTerm(), asked at least every
// leader_check); a server that takes over (or takes the lead again) gives every
// heartbeat lease at least one full lease from the takeover, as a restart does
// on one server, so that executors whose heartbeats failed while the leader was
// lost keep their tasks.
//
//   TaskTimers timers(options);
//   store on_commit -> timers.OnCommit(changes);
//   timers.Start(store);                 // loads the leases, then runs
//   timers.Renew(task, now);             // a heartbeat
//   ...
//   timers.Stop();                       // before the store closes
//
// Thread-safe.
#ifndef TASKD_SERVER_TASK_TIMERS_H_
#define TASKD_SERVER_TASK_TIMERS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "storage/task_store.h"

namespace taskd {

struct TaskTimersOptions {
  // Where the time is read and slept on. Not owned; must outlive the timers.
  Clock* clock = Clock::Real();
  // Tasks fired per round (one group commit). Default 256.
  int batch = 256;
  // A live heartbeat lease is checkpointed in the store this many
  // intervals ahead. Default 10.
  int checkpoint_intervals = 10;
  // After a store error, wait this long before reading again. Default 1 s.
  absl::Duration retry_after = absl::Seconds(1);
  // Told of every timeout fired (the task before and after), for logs and
  // metrics. Runs on a thread of the store's; must be quick.
  std::function<void(const Task& before, const Task& after)> on_fire;
  // On a shared store: how often a server asks whether it leads the
  // sweepers (on `clock`). Default 1 s.
  absl::Duration leader_check = absl::Seconds(1);
  // Told when this server starts (true) or stops (false) running the
  // timers; first when the thread starts. On the timer thread. May be empty.
  std::function<void(bool leads)> on_leadership;
};

class TaskTimers {
 public:
  explicit TaskTimers(const TaskTimersOptions& options);
  TaskTimers(const TaskTimers&) = delete;
  TaskTimers& operator=(const TaskTimers&) = delete;
  // Calls Stop().
  ~TaskTimers();

  // Loads the heartbeat leases of the store's started and paused tasks
  // (each ending no sooner than one lease from now), then starts the timer
  // thread on `store` (not owned; it must stay open until Stop() returns).
  // Once. The store's error if the leases cannot be read.
  absl::Status Start(TaskStore* store);
  // Stops the thread, after the round in progress. Idempotent.
  void Stop();

  // The store's on_commit: wakes the thread if a change brings a deadline
  // earlier than the one it sleeps until, and follows the leases (a start,
  // pause or resume renews one; any other move ends it).
  void OnCommit(const std::vector<Change>& changes);

  // A heartbeat for `task` (as read, started or paused, heartbeat-leased)
  // at `now`: its lease ends kHeartbeatGrace intervals from now. Returns
  // that end.
  absl::Time Renew(const Task& task, absl::Time now);
  // When the lease of `task` (its current assignment) ends as renewed in
  // memory; InfinitePast if this taskd has no renewal of it (always, on a
  // shared store).
  absl::Time LeaseEnd(const Task& task);

  // Timeouts fired so far.
  int64_t fired();
  // Rounds of the timer thread so far: each asks whether this server
  // leads and, if it does, reads the deadlines due, then sleeps.
  int64_t rounds();

 private:
  // A heartbeat lease in memory: the assignment and when it ends.
  struct Lease {
    int32_t assign_count = 0;
    absl::Time end;
  };

  void Loop();
  // Whether this server runs the timers now; tells on_leadership of a
  // change.
  bool Leads();
  // When the heartbeat lease of `task` (as read) ends as far as these
  // timers know: renewed in memory (one server), or stored but no sooner
  // than one lease after this server took over (shared store).
  // InfinitePast if not known (FireTimeout then reads the stored lease).
  absl::Time HeldUntil(const Task& task);
  // Fires the due tasks among `tasks` (earliest first), and the leases that
  // ended in memory, and waits for their writes. Returns how many writes it
  // made; *next is the first time something else becomes due.
  int FireDue(const std::vector<Task>& tasks, absl::Time* next,
              bool* store_failed);
  // Records a lease end (if later than the one known for the assignment).
  void SetLease(const std::string& id, int32_t assign_count, absl::Time end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropLease(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TaskTimersOptions options_;
  TaskStore* store_ = nullptr;
  // store_->Shared(): leases live in the store, and the store elects the
  // server that runs the timers.
  bool shared_ = false;
  // Used by the timer thread only: whether it leads, as last told to
  // on_leadership (told_: once at least), and the store's SweeperTerm()
  // as last seen.
  bool leading_ = false;
  bool told_ = false;
  int64_t term_ = 0;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  // The loop is reading and firing (not sleeping); the earliest deadline
  // committed meanwhile.
  bool awake_ ABSL_GUARDED_BY(mu_) = true;
  absl::Time committed_while_awake_ ABSL_GUARDED_BY(mu_) =
      absl::InfiniteFuture();
  // When the sleeping loop wakes by itself (InfinitePast while awake).
  absl::Time sleeping_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t fired_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rounds_ ABSL_GUARDED_BY(mu_) = 0;
  // Shared store: when this server last took over the timers.
  absl::Time leading_since_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);
  // (end, id) of every lease in leases_, earliest first.
  std::set<std::pair<absl::Time, std::string>> ends_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace taskd

#endif  // TASKD_SERVER_TASK_TIMERS_H_
