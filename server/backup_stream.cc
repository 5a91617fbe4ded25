#include "server/backup_stream.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/error_details.h"
#include "base/log.h"
#include "base/sha256.h"
#include "base/thread_name.h"
#include "server/grpc_status.h"

namespace taskd {
namespace {

using tasks::v1::BackupDatabaseResponse;

constexpr int64_t kChunkBytes = 1 << 20;

class Refused final : public BackupStream::Reactor {
 public:
  explicit Refused(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

// Closes a file descriptor on every path out.
class FileCloser {
 public:
  explicit FileCloser(int fd) : fd_(fd) {}
  FileCloser(const FileCloser&) = delete;
  FileCloser& operator=(const FileCloser&) = delete;
  ~FileCloser() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  const int fd_;
};

class Streaming final : public BackupStream::Reactor {
 public:
  Streaming(TaskStore* store, std::string scratch_path,
            std::atomic<bool>* running)
      : store_(store), path_(std::move(scratch_path)), running_(running) {
    thread_ = std::thread([this] { Run(); });
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    written_ = true;
    write_ok_ = ok;
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }
  // The thread has called Finish, its last step: it ends at once.
  void OnDone() override {
    thread_.join();
    delete this;
  }

 private:
  bool KeepGoing() {
    absl::MutexLock lock(&mu_);
    return !cancelled_;
  }

  // Waits for the write in flight; true if it went out.
  bool AwaitWrite() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](Streaming* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->written_ || self->cancelled_;
        },
        this));
    const bool ok = written_ && write_ok_;
    written_ = false;
    return ok;
  }

  void Run() {
    SetThreadName("taskd-backup");
    const absl::Time start = absl::Now();
    int64_t revision = 0;
    int64_t size = 0;
    grpc::Status status = Stream(&revision, &size);
    ::unlink(path_.c_str());
    if (status.ok()) {
      Log(LogLevel::kInfo, "backup sent revision=%d bytes=%d took=%s", revision,
          size, absl::FormatDuration(absl::Now() - start));
    } else {
      Log(LogLevel::kWarning, "backup not sent: %s", status.error_message());
    }
    running_->store(false);
    Finish(status);  // the last use of `this` on this thread
  }

  grpc::Status Stream(int64_t* revision, int64_t* size) {
    ::unlink(path_.c_str());
    absl::StatusOr<int64_t> copied =
        store_->Backup(path_, [this] { return KeepGoing(); });
    if (!copied.ok()) return ToGrpcStatus(copied.status());
    *revision = *copied;
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    FileCloser closer(fd);
    struct stat info;
    if (fd < 0 || ::fstat(fd, &info) != 0) {
      return ToGrpcStatus(absl::UnavailableError(
          absl::StrCat("backup: read ", path_, ": ", strerror(errno))));
    }
    *size = info.st_size;
    Sha256 digest;
    int64_t sent = 0;
    do {
      response_.Clear();
      if (sent == 0) {
        response_.set_revision(*revision);
        response_.set_size_bytes(*size);
      }
      const int64_t want = std::min(kChunkBytes, *size - sent);
      std::string* chunk = response_.mutable_chunk();
      chunk->resize(static_cast<size_t>(want));
      for (int64_t done = 0; done < want;) {
        const ssize_t n =
            ::pread(fd, chunk->data() + done, want - done, sent + done);
        if (n <= 0) {
          return ToGrpcStatus(absl::UnavailableError(
              absl::StrCat("backup: read ", path_, ": ",
                           n == 0 ? "file ended early" : strerror(errno))));
        }
        done += n;
      }
      digest.Update(*chunk);
      sent += want;
      if (sent == *size) {
        response_.set_sha256(digest.HexDigest());
      }
      StartWrite(&response_);
      if (!AwaitWrite()) {
        return grpc::Status(grpc::StatusCode::CANCELLED,
                            "backup: the client left");
      }
    } while (sent < *size);
    return grpc::Status::OK;
  }

  TaskStore* const store_;
  const std::string path_;
  std::atomic<bool>* const running_;
  BackupDatabaseResponse response_;
  absl::Mutex mu_;
  bool written_ ABSL_GUARDED_BY(mu_) = false;
  bool write_ok_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace

BackupStream::Reactor* BackupStream::Start(TaskStore* store,
                                           std::string scratch_path,
                                           std::atomic<bool>* running) {
  if (running->exchange(true)) {
    return Refuse(WithReason(
        absl::ResourceExhaustedError(
            "a backup is already running; one runs at a time, retry when "
            "it ends"),
        "BACKUP_IN_PROGRESS"));
  }
  return new Streaming(store, std::move(scratch_path), running);
}

BackupStream::Reactor* BackupStream::Refuse(const absl::Status& status) {
  return new Refused(ToGrpcStatus(status));
}

}  // namespace taskd
