// FaultInjectionVfs: an SQLite VFS for tests that makes the disk fail on
// demand.
//
// It wraps SQLite's default VFS (unix) and passes every call through, except
// that writes (xWrite, xTruncate) and syncs (xSync) can be made to fail with
// a chosen result code: SQLITE_FULL for a full disk, SQLITE_IOERR_WRITE or
// SQLITE_IOERR_FSYNC for a failing one. A store opened through it
// (SqliteTaskStoreOptions::vfs = vfs->name()) then meets the errors at the
// exact places a real disk would produce them, inside SQLite's pager and WAL.
//
//   sqlite::FaultInjectionVfs* vfs =
//       sqlite::FaultInjectionVfs::Register("taskd-faults");
//   options.store.vfs = vfs->name();
//   ...
//   vfs->FailWrites({SQLITE_FULL});      // every write fails from now on
//   ... the store's writes fail with ResourceExhausted ...
//   vfs->Clear();                         // the disk works again
//
// A failing sync does not undo the write before it: the bytes are in the
// operating system's cache, as after a real fsync error.
//
// Thread-safe: faults may be set and cleared while other threads use
// connections opened through the VFS.
#ifndef TASKD_STORAGE_FAULT_INJECTION_VFS_H_
#define TASKD_STORAGE_FAULT_INJECTION_VFS_H_

#include <sqlite3.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

namespace taskd::sqlite {

class FaultInjectionVfs {
 public:
  // Which files a fault applies to (bits, combined with |).
  enum Files : int {
    kMainDb = 1,   // the database file (written by checkpoints)
    kWal = 2,      // the write-ahead log (written by commits)
    kJournal = 4,  // rollback journals, temporary files
    kAllFiles = kMainDb | kWal | kJournal,
  };

  struct Fault {
    // The result code of a failing call; SQLITE_OK means no fault.
    int rc = SQLITE_OK;
    // The first `skip` matching calls still succeed.
    int64_t skip = 0;
    // Then this many fail; -1: every one until cleared.
    int64_t times = -1;
    int files = kAllFiles;
  };

  // Registers (once per name; later calls return the same object) a VFS
  // called `name` over SQLite's current default VFS, without making it the
  // default. Never returns null; the VFS lives as long as the process,
  // since SQLite keeps pointers to it. Aborts if SQLite refuses to register.
  static FaultInjectionVfs* Register(const std::string& name);

  FaultInjectionVfs(const FaultInjectionVfs&) = delete;
  FaultInjectionVfs& operator=(const FaultInjectionVfs&) = delete;

  const std::string& name() const { return name_; }

  // Replaces the fault for writes (xWrite, xTruncate) or for syncs (xSync).
  void FailWrites(const Fault& fault);
  void FailSyncs(const Fault& fault);
  // Every sync sleeps this long before it proceeds (or fails): a stalled
  // disk. 0 (the default) for none.
  void DelaySyncs(int64_t microseconds);
  // Clears the faults and the delay: the disk works again.
  void Clear();

  // Calls that reached the VFS so far (failed ones included), and how many
  // were made to fail.
  int64_t writes() const;
  int64_t syncs() const;
  int64_t injected() const;

  // Used by the VFS callbacks: whether this call fails, and with what. OK
  // means "pass it through".
  int WriteResult(int file_kind);
  int SyncResult(int file_kind);
  int64_t sync_delay_micros() const;

 private:
  explicit FaultInjectionVfs(std::string name) : name_(std::move(name)) {}
  int Decide(Fault* fault, int64_t* counter, int file_kind);

  const std::string name_;
  // A std::mutex rather than absl::Mutex: ThreadSanitizer sees it even with
  // Debian's (uninstrumented) Abseil, and this object is all about threads.
  mutable std::mutex mu_;
  Fault write_fault_;
  Fault sync_fault_;
  int64_t writes_ = 0;
  int64_t syncs_ = 0;
  int64_t injected_ = 0;
  int64_t sync_delay_micros_ = 0;
};

}  // namespace taskd::sqlite

#endif  // TASKD_STORAGE_FAULT_INJECTION_VFS_H_
