#include "storage/group_commit.h"

#include <algorithm>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "base/error_details.h"
#include "base/thread_name.h"

namespace taskd {

// One Submit call, queued for the writer thread: the write and its
// completion.
struct GroupCommitWriter::Pending {
  Pending(TaskWrite&& write, TaskStore::WriteDone&& done)
      : write(std::move(write)), done(std::move(done)) {}

  const TaskWrite write;
  TaskStore::WriteDone done;
  // Set by the writer: the result; whether the write made a change (took a
  // revision); whether it failed half way through its statements (a storage
  // error after its first statement); and whether it is left out of the
  // batch (it failed so, and the batch was applied again without it).
  absl::StatusOr<Task> result = absl::UnknownError("write not applied");
  bool changed = false;
  bool half_written = false;
  bool left_out = false;
};

// Where one write is applied: the write (Apply sets its half_written and
// changed), the revision it gets if it makes a change, the batch's time, and
// the batch's changes so far (its change is appended).
struct GroupCommitWriter::ApplyContext {
  Pending* write;
  int64_t revision;
  absl::Time now;
  std::vector<Change>* changes;
};

GroupCommitWriter::GroupCommitWriter(const GroupCommitOptions& options,
                                     WriteTransaction* transaction,
                                     Publish publish)
    : options_(options),
      transaction_(transaction),
      publish_(std::move(publish)),
      thread_([this] { WriterLoop(); }),
      writer_id_(thread_.get_id()) {}

GroupCommitWriter::~GroupCommitWriter() {
  {
    absl::MutexLock lock(&queue_mu_);
    closing_ = true;
  }
  // The writer completes every write queued before it stops.
  thread_.join();
}

void GroupCommitWriter::Submit(TaskWrite write, TaskStore::WriteDone done) {
  auto pending = std::make_unique<Pending>(std::move(write), std::move(done));
  {
    absl::MutexLock lock(&queue_mu_);
    if (!OnWriterThread()) {
      auto room = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return closing_ ||
               queue_.size() < static_cast<size_t>(options_.max_queue);
      };
      queue_mu_.Await(absl::Condition(&room));
    }
    if (!closing_) {
      queue_.push_back(std::move(pending));
      return;
    }
  }
  pending->done(absl::UnavailableError("the store is closed"));
}

void GroupCommitWriter::WriterLoop() {
  SetThreadName("taskd-commit");
  std::vector<std::unique_ptr<Pending>> batch;
  const size_t max_batch = static_cast<size_t>(std::max(1, options_.max_batch));
  while (true) {
    {
      absl::MutexLock lock(&queue_mu_);
      auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return closing_ || !queue_.empty();
      };
      queue_mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // closing, and every write is done
      while (!queue_.empty() && batch.size() < max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    ApplyBatch(&batch);
    batch.clear();
  }
}

void GroupCommitWriter::ApplyBatch(
    std::vector<std::unique_ptr<Pending>>* batch) {
  const absl::Time start = absl::Now();
  CommittedBatch committed;
  absl::Status status = CommitBatch(batch, &committed);
  if (!status.ok()) {
    transaction_->Rollback();
    // Nothing was committed and nothing is published: the revision stays
    // where it was. Every write fails with the batch's error, except those
    // that were refused by their checks or left out, which keep their own.
    for (std::unique_ptr<Pending>& write : *batch) {
      if (write->result.ok()) write->result = status;
    }
  } else if (!committed.changes.empty()) {
    committed.took = absl::Now() - start;
    publish_(committed);
  }
  for (std::unique_ptr<Pending>& write : *batch) {
    write->done(std::move(write->result));
  }
}

absl::Status GroupCommitWriter::CommitBatch(
    std::vector<std::unique_ptr<Pending>>* batch, CommittedBatch* committed) {
  for (int attempt = 0;; ++attempt) {
    committed->changes.clear();
    committed->oldest = 0;
    absl::StatusOr<int64_t> base = transaction_->Begin();
    if (!base.ok()) {
      for (auto& write : *batch) {
        if (!write->left_out) write->result = base.status();
      }
      return base.status();
    }
    int64_t revision = *base;
    const absl::Time now = options_.clock->Now();
    Pending* broken = nullptr;
    for (std::unique_ptr<Pending>& write : *batch) {
      if (write->left_out) continue;
      write->changed = false;
      write->half_written = false;
      const ApplyContext at{write.get(), revision + 1, now,
                            &committed->changes};
      // The overload for the write's kind.
      write->result = std::visit([&](const auto& op) { return Apply(op, at); },
                                 write->write.op);
      if (write->changed) ++revision;
      if (!write->result.ok() &&
          (write->half_written || !transaction_->InTransaction())) {
        broken = write.get();
        break;
      }
    }
    if (broken != nullptr) {
      // It is half applied (or the engine gave up on the whole transaction):
      // apply the others again, without it.
      absl::Status status = broken->result.status();
      broken->left_out = true;
      transaction_->Rollback();
      if (attempt > 0) {
        // Failed twice in one batch: give up on the batch.
        for (auto& write : *batch) {
          if (!write->left_out) write->result = status;
        }
        return status;
      }
      continue;
    }
    const int64_t made = static_cast<int64_t>(committed->changes.size());
    // The history trim rides along with the batch: no sync of its own, and
    // done before the batch's calls return.
    const bool trim = made > 0 && commits_since_trim_ + made >=
                                      options_.history_trim_interval;
    absl::StatusOr<int64_t> oldest =
        transaction_->Finish(revision, made > 0, trim);
    if (!oldest.ok()) return oldest.status();
    if (absl::Status status = transaction_->Commit(); !status.ok()) {
      return status;
    }
    committed->oldest = *oldest;
    commits_since_trim_ = trim ? 0 : commits_since_trim_ + made;
    return absl::OkStatus();
  }
}

// Each Apply checks first (reads only: a refused write changed nothing),
// then writes its two statements: the task row, then the history row
// (RecordChange). One statement is atomic, so a write is half done only if
// the second fails: RecordChange leaves half_written set then.

absl::StatusOr<Task> GroupCommitWriter::Apply(const TaskWrite::Create& create,
                                              const ApplyContext& at) {
  const Task& task = create.task;
  if (!create.request_id.empty()) {
    absl::StatusOr<std::optional<Task>> earlier =
        transaction_->FindByRequest(task.tenant_id(), create.request_id);
    if (!earlier.ok()) return earlier.status();
    if (earlier->has_value()) return **std::move(earlier);
  }
  absl::StatusOr<bool> taken = transaction_->Taken(task);
  if (!taken.ok()) return taken.status();
  if (*taken) {
    return absl::AlreadyExistsError(
        absl::StrCat("task \"", task.id(), "\" already exists"));
  }
  Task stored = task;
  stored.set_revision(at.revision);
  stored.set_etag(EtagOf(at.revision));
  if (absl::Status status = transaction_->Insert(stored, create.request_id);
      !status.ok()) {
    return status;
  }
  return RecordChange(Change::Kind::kCreated, std::move(stored), std::nullopt,
                      at);
}

absl::StatusOr<Task> GroupCommitWriter::Apply(const TaskWrite::Update& update,
                                              const ApplyContext& at) {
  absl::StatusOr<Task> current = transaction_->Find(update.id);
  if (!current.ok()) return current.status();
  return UpdateFound(*std::move(current), update.mutation, at);
}

absl::StatusOr<Task> GroupCommitWriter::Apply(const TaskWrite::Claim& claim,
                                              const ApplyContext& at) {
  WriteTransaction* transaction = transaction_;
  TaskLister list = [transaction](const ListQuery& query) {
    return transaction->ReadPage(query);
  };
  absl::StatusOr<std::optional<Task>> picked = claim.pick(list);
  if (!picked.ok()) return picked.status();
  if (!picked->has_value()) {
    return WithReason(absl::NotFoundError("no task matches the claim"),
                      "NOTHING_TO_CLAIM");
  }
  return UpdateFound(**std::move(picked), claim.mutation, at);
}

absl::StatusOr<Task> GroupCommitWriter::Apply(const TaskWrite::Touch& touch,
                                              const ApplyContext& at) {
  absl::StatusOr<Task> current = transaction_->Find(touch.id);
  if (!current.ok()) return current.status();
  absl::StatusOr<Task> next = touch.mutation(*current);
  if (!next.ok()) return next.status();
  if (next->id() != current->id() || next->uuid() != current->uuid() ||
      next->revision() != current->revision()) {
    return absl::InternalError("a touch changed a task's id, uuid or revision");
  }
  next->set_etag(EtagOf(next->revision()));
  // One statement, no history row: it is atomic on its own, and makes no
  // change for the batch to publish.
  if (absl::Status status = transaction_->Replace(*current, *next);
      !status.ok()) {
    return status;
  }
  return next;
}

absl::StatusOr<Task> GroupCommitWriter::UpdateFound(
    Task current, const TaskMutation& mutation, const ApplyContext& at) {
  absl::StatusOr<Task> next = mutation(current);
  if (!next.ok()) return next.status();
  if (next->id() != current.id() || next->uuid() != current.uuid()) {
    return absl::InternalError("a mutation changed a task's id or uuid");
  }
  next->set_revision(at.revision);
  next->set_etag(EtagOf(at.revision));
  if (absl::Status status = transaction_->Replace(current, *next);
      !status.ok()) {
    return status;
  }
  return RecordChange(Change::Kind::kUpdated, *std::move(next),
                      std::move(current), at);
}

absl::StatusOr<Task> GroupCommitWriter::Apply(const TaskWrite::Delete& del,
                                              const ApplyContext& at) {
  absl::StatusOr<Task> current = transaction_->Find(del.id);
  if (!current.ok()) return current.status();
  if (del.precondition) {
    if (absl::Status status = del.precondition(*current); !status.ok()) {
      return status;
    }
  }
  Task deleted = *current;
  deleted.set_revision(at.revision);
  deleted.set_etag(EtagOf(at.revision));
  if (absl::Status status = transaction_->Remove(current->id()); !status.ok()) {
    return status;
  }
  return RecordChange(Change::Kind::kDeleted, std::move(deleted),
                      *std::move(current), at);
}

absl::StatusOr<Task> GroupCommitWriter::RecordChange(
    Change::Kind kind, Task task, std::optional<Task> previous,
    const ApplyContext& at) {
  Change change{at.revision, kind, std::move(task), std::move(previous),
                at.now};
  at.write->half_written = true;
  if (absl::Status status = transaction_->Record(change); !status.ok()) {
    return status;
  }
  if (absl::Status status = CountChange(change); !status.ok()) return status;
  at.write->half_written = false;
  at.write->changed = true;
  at.changes->push_back(std::move(change));
  return at.changes->back().task;
}

absl::Status GroupCommitWriter::CountChange(const Change& change) {
  switch (change.kind) {
    case Change::Kind::kCreated:
      return transaction_->AddToCounter(change.task, 1);
    case Change::Kind::kDeleted:
      return transaction_->AddToCounter(change.task, -1);
    case Change::Kind::kUpdated:
      break;
  }
  const Task& before = *change.previous;
  const Task& after = change.task;
  if (before.tenant_id() == after.tenant_id() &&
      before.state() == after.state() &&
      before.result_code() == after.result_code()) {
    return absl::OkStatus();  // most updates: nothing counted changes
  }
  if (absl::Status s = transaction_->AddToCounter(before, -1); !s.ok()) {
    return s;
  }
  return transaction_->AddToCounter(after, 1);
}

}  // namespace taskd
