// FaultInjectionVfs: an SQLite VFS for tests that makes the disk fail on
// demand.
//
// It wraps SQLite's default VFS (unix; the plumbing is vfs_shim.h) and
// passes every call through, except that writes (xWrite, xTruncate) and syncs
// (xSync) can be made to fail with a chosen result code: SQLITE_FULL for a full
// disk, SQLITE_IOERR_WRITE or SQLITE_IOERR_FSYNC for a failing one. A store
// opened through it (SqliteTaskStoreOptions::vfs = vfs->name()) then meets the
// errors at the exact places a real disk would produce them, inside SQLite's
// pager and WAL.
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
// Power loss (the durability test, as SQLite's crash tests and LevelDB's
// fault-injection environment do it): with TrackUnsynced(), the VFS keeps,
// for every sector a write or truncation changed since its file's last
// successful sync, what that sector held at the sync: the disk, while the
// file itself holds the operating system's cache. CutPowerAfter(n) stops
// the machine n calls later: that write, truncation, sync or delete and
// every one after it fails with an I/O error and changes nothing. Once every
// connection is closed, LosePower() rewrites the files as the disk had them:
// every unsynced sector goes back (Loss::kUnsynced), or each one at random
// keeps its new bytes or goes back (Loss::kTorn: a disk that reorders and
// tears writes at sector granularity). A sync that fails leaves its sectors
// lost even if a later sync succeeds, unless they are written again (as
// Linux does: after fsync reports an error, the pages it could not write are
// marked clean and never written). Deleting or creating a file is durable at
// once (the directory is treated as always synced).
//
//   vfs->TrackUnsynced();
//   vfs->CutPowerAfter(120);
//   ... writes, until they fail ...
//   store.reset();                                   // every file closed
//   vfs->LosePower(FaultInjectionVfs::Loss::kTorn, seed);
//   ... open the store again and check what survived ...
//
// Thread-safe: faults may be set and cleared while other threads use
// connections opened through the VFS.
#ifndef TASKD_STORAGE_FAULT_INJECTION_VFS_H_
#define TASKD_STORAGE_FAULT_INJECTION_VFS_H_

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
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

  ~FaultInjectionVfs();
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

  // ---- Power loss ----
  enum class Loss {
    kUnsynced,  // every sector written since its file's last sync is lost
    kTorn,      // each such sector independently survives or is lost
  };
  // Starts keeping each file's synced content apart (see above). Files
  // must not have unsynced writes from before (call it before opening).
  void TrackUnsynced();
  // After `calls` more writes, truncations, syncs or deletes (0: the next
  // one) the power goes: from that call on they fail with SQLITE_IOERR_*
  // and change nothing.
  void CutPowerAfter(int64_t calls);
  bool power_is_cut() const;
  // Rewrites every tracked file as the disk held it (see above), then ends
  // the cut and the tracking: calls work again. Call it once every file
  // opened through the VFS is closed. Returns how many sectors went back;
  // an error if a file could not be rewritten.
  int64_t LosePower(Loss loss, uint64_t seed, std::string* error);

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
  // Whether the power is gone for this call (counts it towards the cut).
  bool PowerGone();
  // The tracking of one file, by path; null when not tracking or the file
  // has no path (a temporary file, lost at power loss anyway).
  struct FileTrack;
  FileTrack* TrackOf(const char* path);
  // Before `file` (tracked as `track`) changes [offset, offset + amount)
  // or is truncated to `offset` (amount -1): keeps the synced content of
  // the sectors that change.
  int BeforeChange(FileTrack* track, sqlite3_file* file, int64_t offset,
                   int64_t amount);
  // After a sync of `track`'s file: what it had is on the disk now (ok), or
  // lost for good (failed).
  void AfterSync(FileTrack* track, sqlite3_file* file, bool ok);
  void Forget(const char* path);

 private:
  explicit FaultInjectionVfs(std::string name);
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
  bool tracking_ = false;
  int64_t cut_countdown_ = -1;  // -1: no cut planned
  bool power_cut_ = false;
  std::map<std::string, std::unique_ptr<FileTrack>> tracks_;
};

}  // namespace taskd::sqlite

#endif  // TASKD_STORAGE_FAULT_INJECTION_VFS_H_
