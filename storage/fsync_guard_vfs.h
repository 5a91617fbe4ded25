// FsyncGuardVfs: an SQLite VFS over another one that makes a failed fsync of
// the write-ahead log safe to go on from. taskd opens its database through
// it with --sync=normal (synchronous=NORMAL); with FULL, SQLite's own retry
// is enough (a commit whose sync failed is not counted, and the next one
// writes its frames over it and syncs them).
//
// Why: when fsync reports an error, Linux marks the pages it could not write
// clean. A later fsync that succeeds does not write them, so the log on the
// disk has a hole that SQLite knows nothing about. With synchronous=NORMAL
// (--sync=normal) the log is synced only by checkpoints; the checkpoint
// after the failed one syncs "successfully" and copies pages from past the
// hole into the database file. A power loss before the log restarts then
// leaves a database file newer than the log's readable part, and recovery
// lays the older log pages over it: a corrupt database
// (tests/power_loss_test.cc shows it).
//
// What it does: for each write-ahead log, it keeps a copy of every write and
// truncation since the file's last successful sync. After a sync fails, the
// next sync first does them all again, from the copy (never by reading the
// file back: the kernel may have dropped the pages), so that a sync that
// succeeds means what it says. A copy that would outgrow
// `max_pending_bytes` is synced by the VFS itself first: with
// synchronous=NORMAL the log is then synced every few MiB, besides at
// checkpoints. If that sync fails too, the write fails with
// SQLITE_IOERR_WRITE (the store's write is UNAVAILABLE) until a sync
// succeeds. Other files pass through: after a failed sync of the database
// file, SQLite's next checkpoint copies the log into it again.
//
// The cost: a copy of each log write, freed at the next sync (every commit
// with synchronous=FULL; with NORMAL, at most `max_pending_bytes` of it),
// and with NORMAL one more sync per `max_pending_bytes` of log.
//
//   const std::string& vfs = FsyncGuardVfs::Register("", {});
//   sqlite3_open_v2(path, &db, flags, vfs.c_str());
#ifndef TASKD_STORAGE_FSYNC_GUARD_VFS_H_
#define TASKD_STORAGE_FSYNC_GUARD_VFS_H_

#include <cstdint>
#include <string>

namespace taskd::sqlite {

class FsyncGuardVfs {
 public:
  struct Options {
    // The most bytes of log writes kept per file: memory, against how often
    // the VFS syncs on its own. Default 4 MiB.
    int64_t max_pending_bytes = int64_t{4} << 20;
  };

  // Registers (once per `base` and options; later calls return the same
  // name) a VFS over the registered VFS called `base` (empty: SQLite's
  // default), without making it the default, and returns its name. The
  // VFS lives as long as the process. Aborts if `base` is not registered
  // or SQLite refuses the registration. Thread-safe.
  static const std::string& Register(const std::string& base,
                                     const Options& options);
};

}  // namespace taskd::sqlite

#endif  // TASKD_STORAGE_FSYNC_GUARD_VFS_H_
