// The plumbing of an SQLite VFS that wraps another one (a shim): every call
// passes through to the wrapped VFS and its file, except the few the shim
// replaces. Both shims in this folder are built on it: fsync_guard_vfs.h
// (linked into taskd) and fault_injection_vfs.h (tests only).
//
// A shim's open file is a ShimFile followed, in the same allocation, by the
// wrapped VFS's own file object; so sqlite3_vfs::szOsFile is
// sizeof(ShimFile) + the wrapped VFS's szOsFile (ShimVfs sets it).
//
//   const ShimMethods kMethods = ShimMethods::Replacing({.write = MyWrite});
//   int MyOpen(sqlite3_vfs* vfs, const char* name, sqlite3_file* file,
//              int flags, int* out_flags) {
//     int rc = OpenShimFile(ShimRealVfs(vfs), kMethods, name, file, flags,
//                           out_flags);
//     AsShimFile(file)->state = ...;  // the shim's own, per file
//     return rc;
//   }
//   sqlite3_vfs vfs = ShimVfs(sqlite3_vfs_find(nullptr), "my-shim");
//   vfs.xOpen = MyOpen;
//   sqlite3_vfs_register(&vfs_that_lives_for_ever, 0);
#ifndef TASKD_STORAGE_VFS_SHIM_H_
#define TASKD_STORAGE_VFS_SHIM_H_

#include <sqlite3.h>

namespace taskd::sqlite {

// What kind of file a ShimFile is, from its open flags.
enum class ShimFileKind : int { kMainDb, kWal, kOther };

struct ShimFile {
  sqlite3_file base;  // pMethods: the shim's methods
  void* owner;        // the shim's object, set by the shim's xOpen
  void* state;        // the shim's data for this file, or null
  ShimFileKind kind;
  int padding;

  // The wrapped VFS's file object, right after this one.
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};
// The wrapped file object follows: keep it 8-byte aligned, as SQLite's own
// allocation is.
static_assert(sizeof(ShimFile) % 8 == 0, "the wrapped file must stay aligned");

inline ShimFile* AsShimFile(sqlite3_file* file) {
  return reinterpret_cast<ShimFile*>(file);
}

// The io methods of a shim's files, one table per sqlite3_io_methods version
// (a file gets the version of the wrapped file: 2 adds shared memory for
// WAL, 3 memory-mapped reads).
struct ShimMethods {
  // The methods a shim replaces; null ones pass through.
  struct Replaced {
    int (*close)(sqlite3_file*) = nullptr;
    int (*write)(sqlite3_file*, const void*, int, sqlite3_int64) = nullptr;
    int (*truncate)(sqlite3_file*, sqlite3_int64) = nullptr;
    int (*sync)(sqlite3_file*, int) = nullptr;
  };
  static ShimMethods Replacing(const Replaced& replaced);

  sqlite3_io_methods by_version[4];
};

// Opens `name` with `real` into `file` (a ShimFile), sets its kind and its
// methods from `methods`; owner and state are left null for the caller.
// Returns what the wrapped VFS's xOpen returned. As SQLite requires, a file
// whose open failed has pMethods null unless the wrapped VFS set its own.
int OpenShimFile(sqlite3_vfs* real, const ShimMethods& methods,
                 const char* name, sqlite3_file* file, int flags,
                 int* out_flags);

// A VFS called `name` (the pointer must outlive the VFS) over `real` whose
// every method passes through: the shim sets xOpen (with OpenShimFile) and
// whichever others it replaces, then registers it. pAppData holds `real`.
sqlite3_vfs ShimVfs(sqlite3_vfs* real, const char* name);
inline sqlite3_vfs* ShimRealVfs(sqlite3_vfs* vfs) {
  return static_cast<sqlite3_vfs*>(vfs->pAppData);
}

}  // namespace taskd::sqlite

#endif  // TASKD_STORAGE_VFS_SHIM_H_
