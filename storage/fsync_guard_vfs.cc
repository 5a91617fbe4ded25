#include "storage/fsync_guard_vfs.h"

#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "storage/vfs_shim.h"

namespace taskd::sqlite {
namespace {

// The writes and truncations of one log since its last successful sync, in
// order, so that doing them again leaves the file as they did.
struct Pending {
  struct Change {
    int64_t offset;  // where a write starts; a truncation's new size
    int64_t begin;   // a write's bytes in `bytes`; -1 for a truncation
    int64_t size;
  };
  std::vector<Change> changes;
  std::string bytes;
  bool sync_failed = false;  // the file's cached pages may not be written

  void Clear() {
    changes.clear();
    bytes.clear();
    // Give a big copy back (a backlog behind a long reader); keep a small
    // one's buffer for the next commits.
    if (bytes.capacity() > (size_t{1} << 20)) bytes.shrink_to_fit();
    sync_failed = false;
  }
};

struct Registration {
  sqlite3_vfs vfs;
  std::string name;
  FsyncGuardVfs::Options options;
};

Pending* PendingOf(sqlite3_file* file) {
  return static_cast<Pending*>(AsShimFile(file)->state);
}
const FsyncGuardVfs::Options& OptionsOf(sqlite3_file* file) {
  return static_cast<Registration*>(AsShimFile(file)->owner)->options;
}

// Does the kept changes again if a sync failed since they were made, then
// syncs: on success they are on the disk and forgotten.
int SyncPending(sqlite3_file* file, Pending* pending, int flags) {
  sqlite3_file* real = AsShimFile(file)->real();
  if (pending->sync_failed) {
    for (const Pending::Change& change : pending->changes) {
      const int rc = change.begin < 0
                         ? real->pMethods->xTruncate(real, change.offset)
                         : real->pMethods->xWrite(
                               real, pending->bytes.data() + change.begin,
                               static_cast<int>(change.size), change.offset);
      if (rc != SQLITE_OK) return rc;
    }
  }
  const int rc = real->pMethods->xSync(real, flags);
  if (rc == SQLITE_OK) {
    pending->Clear();
  } else {
    pending->sync_failed = true;
  }
  return rc;
}

int Write(sqlite3_file* file, const void* buffer, int amount,
          sqlite3_int64 offset) {
  Pending* pending = PendingOf(file);
  sqlite3_file* real = AsShimFile(file)->real();
  if (pending == nullptr) {
    return real->pMethods->xWrite(real, buffer, amount, offset);
  }
  if (static_cast<int64_t>(pending->bytes.size()) + amount >
      OptionsOf(file).max_pending_bytes) {
    if (SyncPending(file, pending, SQLITE_SYNC_NORMAL) != SQLITE_OK) {
      return SQLITE_IOERR_WRITE;
    }
  }
  const int rc = real->pMethods->xWrite(real, buffer, amount, offset);
  if (rc != SQLITE_OK) return rc;
  pending->changes.push_back(
      {offset, static_cast<int64_t>(pending->bytes.size()), amount});
  pending->bytes.append(static_cast<const char*>(buffer), amount);
  return SQLITE_OK;
}

int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  Pending* pending = PendingOf(file);
  sqlite3_file* real = AsShimFile(file)->real();
  const int rc = real->pMethods->xTruncate(real, size);
  if (rc == SQLITE_OK && pending != nullptr) {
    pending->changes.push_back({size, -1, 0});
  }
  return rc;
}

int Sync(sqlite3_file* file, int flags) {
  Pending* pending = PendingOf(file);
  if (pending == nullptr) {
    sqlite3_file* real = AsShimFile(file)->real();
    return real->pMethods->xSync(real, flags);
  }
  return SyncPending(file, pending, flags);
}

int Close(sqlite3_file* file) {
  delete PendingOf(file);
  AsShimFile(file)->state = nullptr;
  sqlite3_file* real = AsShimFile(file)->real();
  return real->pMethods->xClose(real);
}

const ShimMethods& Methods() {
  static const ShimMethods methods = ShimMethods::Replacing(
      {/*close=*/Close, /*write=*/Write, /*truncate=*/Truncate,
       /*sync=*/Sync});
  return methods;
}

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags,
         int* out_flags) {
  int rc =
      OpenShimFile(ShimRealVfs(vfs), Methods(), name, file, flags, out_flags);
  ShimFile* shim = AsShimFile(file);
  shim->owner = reinterpret_cast<Registration*>(vfs);
  if (rc == SQLITE_OK && shim->kind == ShimFileKind::kWal) {
    shim->state = new Pending;
  }
  return rc;
}

}  // namespace

const std::string& FsyncGuardVfs::Register(const std::string& base,
                                           const Options& options) {
  static std::mutex registry_mu;
  // Never destroyed: SQLite may use a registered VFS until the process ends.
  static auto* registry = new std::map<std::string, Registration*>;
  std::string name = "taskd-fsync-guard";
  if (!base.empty()) name += "+" + base;
  if (options.max_pending_bytes != Options().max_pending_bytes) {
    name += "/" + std::to_string(options.max_pending_bytes);
  }
  std::lock_guard<std::mutex> lock(registry_mu);
  auto it = registry->find(name);
  if (it != registry->end()) return it->second->name;

  sqlite3_vfs* real = sqlite3_vfs_find(base.empty() ? nullptr : base.c_str());
  if (real == nullptr || real->iVersion < 2) {
    std::fprintf(stderr, "FsyncGuardVfs: no usable VFS \"%s\"\n", base.c_str());
    std::abort();
  }
  auto* registration = new Registration{};
  registration->name = name;
  registration->options = options;
  registration->vfs = ShimVfs(real, registration->name.c_str());
  registration->vfs.xOpen = Open;
  if (int rc = sqlite3_vfs_register(&registration->vfs, /*makeDflt=*/0);
      rc != SQLITE_OK) {
    std::fprintf(stderr, "FsyncGuardVfs: cannot register %s: %s\n",
                 name.c_str(), sqlite3_errstr(rc));
    std::abort();
  }
  registry->emplace(name, registration);
  return registration->name;
}

}  // namespace taskd::sqlite
