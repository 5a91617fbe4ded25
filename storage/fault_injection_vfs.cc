#include "storage/fault_injection_vfs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <utility>

#include "storage/vfs_shim.h"

namespace taskd::sqlite {

// What a power cut would leave of one file: its size at the last successful
// sync and, for each sector changed since, the sector's bytes then.
struct FaultInjectionVfs::FileTrack {
  struct Sector {
    std::string synced;   // kSectorSize bytes (zeros beyond the old end)
    bool doomed = false;  // a sync of it failed: lost even after later syncs
  };
  int64_t synced_size = -1;  // -1: unknown until the first change
  std::map<int64_t, Sector> sectors;
};

namespace {

// The granularity at which a power cut tears writes.
constexpr int64_t kSectorSize = 512;

// The registered sqlite3_vfs: SQLite's struct first, so that the pointer
// SQLite hands back to the callbacks is also ours.
struct Registration {
  sqlite3_vfs vfs;
  FaultInjectionVfs* owner;
};

FaultInjectionVfs* Owner(sqlite3_file* file) {
  return static_cast<FaultInjectionVfs*>(AsShimFile(file)->owner);
}
FaultInjectionVfs::FileTrack* Track(sqlite3_file* file) {
  return static_cast<FaultInjectionVfs::FileTrack*>(AsShimFile(file)->state);
}
int KindOf(sqlite3_file* file) {
  switch (AsShimFile(file)->kind) {
    case ShimFileKind::kMainDb:
      return FaultInjectionVfs::kMainDb;
    case ShimFileKind::kWal:
      return FaultInjectionVfs::kWal;
    case ShimFileKind::kOther:
      break;
  }
  return FaultInjectionVfs::kJournal;
}

// --- The file methods this VFS replaces: write, truncate and sync.

int Write(sqlite3_file* file, const void* buffer, int amount,
          sqlite3_int64 offset) {
  FaultInjectionVfs* owner = Owner(file);
  if (owner->PowerGone()) return SQLITE_IOERR_WRITE;
  if (int rc = owner->WriteResult(KindOf(file)); rc != SQLITE_OK) return rc;
  sqlite3_file* real = AsShimFile(file)->real();
  if (Track(file) != nullptr) {
    int rc = owner->BeforeChange(Track(file), real, offset, amount);
    if (rc != SQLITE_OK) return rc;
  }
  return real->pMethods->xWrite(real, buffer, amount, offset);
}
int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  FaultInjectionVfs* owner = Owner(file);
  if (owner->PowerGone()) return SQLITE_IOERR_TRUNCATE;
  if (int rc = owner->WriteResult(KindOf(file)); rc != SQLITE_OK) {
    // A failed truncation is reported as such, whatever the write fault.
    return rc == SQLITE_FULL ? rc : SQLITE_IOERR_TRUNCATE;
  }
  sqlite3_file* real = AsShimFile(file)->real();
  if (Track(file) != nullptr) {
    int rc = owner->BeforeChange(Track(file), real, size, -1);
    if (rc != SQLITE_OK) return rc;
  }
  return real->pMethods->xTruncate(real, size);
}
int Sync(sqlite3_file* file, int flags) {
  FaultInjectionVfs* owner = Owner(file);
  if (int64_t delay = owner->sync_delay_micros(); delay > 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(delay));
  }
  if (owner->PowerGone()) return SQLITE_IOERR_FSYNC;
  sqlite3_file* real = AsShimFile(file)->real();
  if (int rc = owner->SyncResult(KindOf(file)); rc != SQLITE_OK) {
    if (Track(file) != nullptr) {
      owner->AfterSync(Track(file), real, /*ok=*/false);
    }
    return rc;
  }
  int rc = real->pMethods->xSync(real, flags);
  if (Track(file) != nullptr) {
    owner->AfterSync(Track(file), real, rc == SQLITE_OK);
  }
  return rc;
}

const ShimMethods& Methods() {
  static const ShimMethods methods = ShimMethods::Replacing(
      {/*close=*/nullptr, /*write=*/Write, /*truncate=*/Truncate,
       /*sync=*/Sync});
  return methods;
}

// --- The VFS methods this VFS replaces: open (to find the file's track)
// and delete (which the power cut stops).

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags,
         int* out_flags) {
  FaultInjectionVfs* owner = reinterpret_cast<Registration*>(vfs)->owner;
  int rc =
      OpenShimFile(ShimRealVfs(vfs), Methods(), name, file, flags, out_flags);
  AsShimFile(file)->owner = owner;
  AsShimFile(file)->state = owner->TrackOf(name);
  return rc;
}
int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  FaultInjectionVfs* owner = reinterpret_cast<Registration*>(vfs)->owner;
  if (owner->PowerGone()) return SQLITE_IOERR_DELETE;
  int rc = ShimRealVfs(vfs)->xDelete(ShimRealVfs(vfs), name, sync_dir);
  if (rc == SQLITE_OK) owner->Forget(name);
  return rc;
}

}  // namespace

FaultInjectionVfs* FaultInjectionVfs::Register(const std::string& name) {
  static std::mutex registry_mu;
  // Never destroyed: SQLite may use a registered VFS until the process ends.
  static auto* registry = new std::map<std::string, Registration*>;
  std::lock_guard<std::mutex> lock(registry_mu);
  auto it = registry->find(name);
  if (it != registry->end()) return it->second->owner;

  sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
  if (real == nullptr || real->iVersion < 2) {
    std::fprintf(stderr, "FaultInjectionVfs: no usable default VFS\n");
    std::abort();
  }
  auto* registration = new Registration{};
  registration->owner = new FaultInjectionVfs(name);
  registration->vfs = ShimVfs(real, registration->owner->name_.c_str());
  registration->vfs.xOpen = Open;
  registration->vfs.xDelete = Delete;
  if (int rc = sqlite3_vfs_register(&registration->vfs, /*makeDflt=*/0);
      rc != SQLITE_OK) {
    std::fprintf(stderr, "FaultInjectionVfs: cannot register %s: %s\n",
                 name.c_str(), sqlite3_errstr(rc));
    std::abort();
  }
  registry->emplace(name, registration);
  return registration->owner;
}

void FaultInjectionVfs::FailWrites(const Fault& fault) {
  std::lock_guard<std::mutex> lock(mu_);
  write_fault_ = fault;
}

void FaultInjectionVfs::FailSyncs(const Fault& fault) {
  std::lock_guard<std::mutex> lock(mu_);
  sync_fault_ = fault;
}

void FaultInjectionVfs::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  write_fault_ = Fault();
  sync_fault_ = Fault();
  sync_delay_micros_ = 0;
}

int64_t FaultInjectionVfs::writes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return writes_;
}

int64_t FaultInjectionVfs::syncs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return syncs_;
}

int64_t FaultInjectionVfs::injected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return injected_;
}

int FaultInjectionVfs::WriteResult(int file_kind) {
  std::lock_guard<std::mutex> lock(mu_);
  return Decide(&write_fault_, &writes_, file_kind);
}

void FaultInjectionVfs::DelaySyncs(int64_t microseconds) {
  std::lock_guard<std::mutex> lock(mu_);
  sync_delay_micros_ = microseconds;
}

int64_t FaultInjectionVfs::sync_delay_micros() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sync_delay_micros_;
}

int FaultInjectionVfs::SyncResult(int file_kind) {
  std::lock_guard<std::mutex> lock(mu_);
  return Decide(&sync_fault_, &syncs_, file_kind);
}

int FaultInjectionVfs::Decide(Fault* fault, int64_t* counter, int file_kind) {
  ++*counter;
  if (fault->rc == SQLITE_OK || (fault->files & file_kind) == 0) {
    return SQLITE_OK;
  }
  if (fault->skip > 0) {
    --fault->skip;
    return SQLITE_OK;
  }
  if (fault->times == 0) return SQLITE_OK;
  if (fault->times > 0) --fault->times;
  ++injected_;
  return fault->rc;
}

FaultInjectionVfs::FaultInjectionVfs(std::string name)
    : name_(std::move(name)) {}
FaultInjectionVfs::~FaultInjectionVfs() = default;

// ---- Power loss ----

bool FaultInjectionVfs::PowerGone() {
  std::lock_guard<std::mutex> lock(mu_);
  if (power_cut_) return true;
  if (cut_countdown_ < 0) return false;
  if (cut_countdown_ == 0) {
    power_cut_ = true;
    return true;
  }
  --cut_countdown_;
  return false;
}

void FaultInjectionVfs::TrackUnsynced() {
  std::lock_guard<std::mutex> lock(mu_);
  tracking_ = true;
  for (auto& [path, track] : tracks_) *track = FileTrack();
}

void FaultInjectionVfs::CutPowerAfter(int64_t calls) {
  std::lock_guard<std::mutex> lock(mu_);
  cut_countdown_ = calls < 0 ? 0 : calls;
}

bool FaultInjectionVfs::power_is_cut() const {
  std::lock_guard<std::mutex> lock(mu_);
  return power_cut_;
}

FaultInjectionVfs::FileTrack* FaultInjectionVfs::TrackOf(const char* path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!tracking_ || path == nullptr) return nullptr;
  // Tracks are never erased (an open file may point at one): a deleted or
  // untracked file's is emptied instead.
  std::unique_ptr<FileTrack>& track = tracks_[path];
  if (track == nullptr) track = std::make_unique<FileTrack>();
  return track.get();
}

int FaultInjectionVfs::BeforeChange(FileTrack* track, sqlite3_file* file,
                                    int64_t offset, int64_t amount) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!tracking_) return SQLITE_OK;
  sqlite3_int64 size = 0;
  if (int rc = file->pMethods->xFileSize(file, &size); rc != SQLITE_OK) {
    return rc;
  }
  if (track->synced_size < 0) track->synced_size = size;
  // A write changes the sectors it covers; a truncation those it cuts off.
  const int64_t begin = offset;
  const int64_t end = amount >= 0 ? offset + amount : size;
  for (int64_t sector = begin / kSectorSize; sector * kSectorSize < end;
       ++sector) {
    auto [it, inserted] = track->sectors.try_emplace(sector);
    if (!inserted) {
      // Written again: whatever a failed sync lost, these bytes are new
      // and the next sync writes them.
      it->second.doomed = false;
      continue;
    }
    std::string& synced = it->second.synced;
    synced.assign(kSectorSize, '\0');
    int rc = file->pMethods->xRead(file, synced.data(), kSectorSize,
                                   sector * kSectorSize);
    if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) {
      track->sectors.erase(it);
      return rc;
    }
  }
  return SQLITE_OK;
}

void FaultInjectionVfs::AfterSync(FileTrack* track, sqlite3_file* file,
                                  bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!tracking_) return;
  if (!ok) {
    for (auto& [sector, state] : track->sectors) state.doomed = true;
    return;
  }
  for (auto it = track->sectors.begin(); it != track->sectors.end();) {
    it = it->second.doomed ? std::next(it) : track->sectors.erase(it);
  }
  sqlite3_int64 size = 0;
  if (file->pMethods->xFileSize(file, &size) == SQLITE_OK) {
    track->synced_size = size;
  }
}

void FaultInjectionVfs::Forget(const char* path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (path == nullptr) return;
  auto it = tracks_.find(path);
  if (it == tracks_.end()) return;
  // Gone for good; a file created again at the path starts empty.
  *it->second = FileTrack();
  it->second->synced_size = 0;
}

int64_t FaultInjectionVfs::LosePower(Loss loss, uint64_t seed,
                                     std::string* error) {
  std::lock_guard<std::mutex> lock(mu_);
  std::mt19937_64 random(seed);
  int64_t reverted = 0;
  for (auto& [path, track] : tracks_) {
    if (track->synced_size < 0 && track->sectors.empty()) continue;
    const int fd = ::open(path.c_str(), O_RDWR);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // deleted: durable at once
      *error = path + ": " + std::strerror(errno);
      break;
    }
    struct stat st {};
    ::fstat(fd, &st);
    const int64_t current_size = st.st_size;
    for (auto& [sector, state] : track->sectors) {
      const bool back =
          state.doomed || loss == Loss::kUnsynced || (random() & 1) == 0;
      if (!back) continue;
      if (::pwrite(fd, state.synced.data(), kSectorSize,
                   sector * kSectorSize) != kSectorSize) {
        *error = path + ": " + std::strerror(errno);
      }
      ++reverted;
    }
    // The size: the synced one, or (torn) maybe the cached one.
    int64_t size = track->synced_size < 0 ? current_size : track->synced_size;
    if (loss == Loss::kTorn && (random() & 1) == 0) size = current_size;
    if (::ftruncate(fd, size) != 0) *error = path + ": " + std::strerror(errno);
    ::fsync(fd);
    ::close(fd);
  }
  for (auto& [path, track] : tracks_) *track = FileTrack();
  tracking_ = false;
  power_cut_ = false;
  cut_countdown_ = -1;
  return reverted;
}

}  // namespace taskd::sqlite
