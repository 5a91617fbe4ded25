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

// One open file: our sqlite3_file header, followed in the same allocation
// (sqlite3_vfs::szOsFile) by the wrapped VFS's own file object.
struct WrappedFile {
  sqlite3_file base;
  FaultInjectionVfs* owner;
  FaultInjectionVfs::FileTrack* track;  // null unless tracking unsynced data
  int kind;                             // FaultInjectionVfs::Files
  int padding;

  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};
// The wrapped VFS's file object follows ours: keep it 8-byte aligned, as
// SQLite's own allocation is.
static_assert(sizeof(WrappedFile) % 8 == 0,
              "the wrapped file must stay aligned");

WrappedFile* Wrapped(sqlite3_file* file) {
  return reinterpret_cast<WrappedFile*>(file);
}
sqlite3_file* Real(sqlite3_file* file) { return Wrapped(file)->real(); }

// The registered sqlite3_vfs: SQLite's struct first, so that the pointer
// SQLite hands back to the callbacks is also ours.
struct Registration {
  sqlite3_vfs vfs;
  sqlite3_vfs* real;
  FaultInjectionVfs* owner;
};
sqlite3_vfs* RealVfs(sqlite3_vfs* vfs) {
  return reinterpret_cast<Registration*>(vfs)->real;
}

// --- sqlite3_io_methods: everything passes through but write and sync.

int Close(sqlite3_file* file) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xClose(real);
}
int Read(sqlite3_file* file, void* buffer, int amount, sqlite3_int64 offset) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xRead(real, buffer, amount, offset);
}
int Write(sqlite3_file* file, const void* buffer, int amount,
          sqlite3_int64 offset) {
  WrappedFile* wrapped = Wrapped(file);
  if (wrapped->owner->PowerGone()) return SQLITE_IOERR_WRITE;
  if (int rc = wrapped->owner->WriteResult(wrapped->kind); rc != SQLITE_OK) {
    return rc;
  }
  sqlite3_file* real = wrapped->real();
  if (wrapped->track != nullptr) {
    int rc = wrapped->owner->BeforeChange(wrapped->track, real, offset, amount);
    if (rc != SQLITE_OK) return rc;
  }
  return real->pMethods->xWrite(real, buffer, amount, offset);
}
int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  WrappedFile* wrapped = Wrapped(file);
  if (wrapped->owner->PowerGone()) return SQLITE_IOERR_TRUNCATE;
  if (int rc = wrapped->owner->WriteResult(wrapped->kind); rc != SQLITE_OK) {
    // A failed truncation is reported as such, whatever the write fault.
    return rc == SQLITE_FULL ? rc : SQLITE_IOERR_TRUNCATE;
  }
  sqlite3_file* real = wrapped->real();
  if (wrapped->track != nullptr) {
    int rc = wrapped->owner->BeforeChange(wrapped->track, real, size, -1);
    if (rc != SQLITE_OK) return rc;
  }
  return real->pMethods->xTruncate(real, size);
}
int Sync(sqlite3_file* file, int flags) {
  WrappedFile* wrapped = Wrapped(file);
  if (int64_t delay = wrapped->owner->sync_delay_micros(); delay > 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(delay));
  }
  if (wrapped->owner->PowerGone()) return SQLITE_IOERR_FSYNC;
  sqlite3_file* real = wrapped->real();
  if (int rc = wrapped->owner->SyncResult(wrapped->kind); rc != SQLITE_OK) {
    if (wrapped->track != nullptr) {
      wrapped->owner->AfterSync(wrapped->track, real, /*ok=*/false);
    }
    return rc;
  }
  int rc = real->pMethods->xSync(real, flags);
  if (wrapped->track != nullptr) {
    wrapped->owner->AfterSync(wrapped->track, real, rc == SQLITE_OK);
  }
  return rc;
}
int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xFileSize(real, size);
}
int Lock(sqlite3_file* file, int level) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xLock(real, level);
}
int Unlock(sqlite3_file* file, int level) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xUnlock(real, level);
}
int CheckReservedLock(sqlite3_file* file, int* out) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xCheckReservedLock(real, out);
}
int FileControl(sqlite3_file* file, int op, void* arg) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xFileControl(real, op, arg);
}
int SectorSize(sqlite3_file* file) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xSectorSize(real);
}
int DeviceCharacteristics(sqlite3_file* file) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xDeviceCharacteristics(real);
}
int ShmMap(sqlite3_file* file, int region, int size, int extend,
           void volatile** out) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xShmMap(real, region, size, extend, out);
}
int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xShmLock(real, offset, n, flags);
}
void ShmBarrier(sqlite3_file* file) {
  sqlite3_file* real = Real(file);
  real->pMethods->xShmBarrier(real);
}
int ShmUnmap(sqlite3_file* file, int delete_flag) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xShmUnmap(real, delete_flag);
}
int Fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xFetch(real, offset, amount, out);
}
int Unfetch(sqlite3_file* file, sqlite3_int64 offset, void* page) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xUnfetch(real, offset, page);
}

// The methods of `version` (1 to 3, as the wrapped file has): version 2
// adds shared memory (WAL), version 3 memory-mapped I/O.
sqlite3_io_methods MethodsOfVersion(int version) {
  sqlite3_io_methods methods{};
  methods.iVersion = version;
  methods.xClose = Close;
  methods.xRead = Read;
  methods.xWrite = Write;
  methods.xTruncate = Truncate;
  methods.xSync = Sync;
  methods.xFileSize = FileSize;
  methods.xLock = Lock;
  methods.xUnlock = Unlock;
  methods.xCheckReservedLock = CheckReservedLock;
  methods.xFileControl = FileControl;
  methods.xSectorSize = SectorSize;
  methods.xDeviceCharacteristics = DeviceCharacteristics;
  if (version >= 2) {
    methods.xShmMap = ShmMap;
    methods.xShmLock = ShmLock;
    methods.xShmBarrier = ShmBarrier;
    methods.xShmUnmap = ShmUnmap;
  }
  if (version >= 3) {
    methods.xFetch = Fetch;
    methods.xUnfetch = Unfetch;
  }
  return methods;
}
const sqlite3_io_methods kMethods[4] = {
    {}, MethodsOfVersion(1), MethodsOfVersion(2), MethodsOfVersion(3)};

// --- sqlite3_vfs: open wraps the file; the rest passes through.

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags,
         int* out_flags) {
  auto* registration = reinterpret_cast<Registration*>(vfs);
  WrappedFile* wrapped = Wrapped(file);
  wrapped->owner = registration->owner;
  wrapped->track = registration->owner->TrackOf(name);
  wrapped->kind = (flags & SQLITE_OPEN_MAIN_DB) ? FaultInjectionVfs::kMainDb
                  : (flags & SQLITE_OPEN_WAL)   ? FaultInjectionVfs::kWal
                                                : FaultInjectionVfs::kJournal;
  sqlite3_file* real = wrapped->real();
  real->pMethods = nullptr;
  int rc = registration->real->xOpen(registration->real, name, real, flags,
                                     out_flags);
  // SQLite calls xClose on a file whose pMethods is set, even after a failed
  // open; mirror what the wrapped VFS did.
  if (real->pMethods == nullptr) {
    file->pMethods = nullptr;
  } else {
    int version = real->pMethods->iVersion;
    file->pMethods = &kMethods[version < 1 ? 1 : version > 3 ? 3 : version];
  }
  return rc;
}
int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  FaultInjectionVfs* owner = reinterpret_cast<Registration*>(vfs)->owner;
  if (owner->PowerGone()) return SQLITE_IOERR_DELETE;
  int rc = RealVfs(vfs)->xDelete(RealVfs(vfs), name, sync_dir);
  if (rc == SQLITE_OK) owner->Forget(name);
  return rc;
}
int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  return RealVfs(vfs)->xAccess(RealVfs(vfs), name, flags, out);
}
int FullPathname(sqlite3_vfs* vfs, const char* name, int size, char* out) {
  return RealVfs(vfs)->xFullPathname(RealVfs(vfs), name, size, out);
}
void* DlOpen(sqlite3_vfs* vfs, const char* name) {
  return RealVfs(vfs)->xDlOpen(RealVfs(vfs), name);
}
void DlError(sqlite3_vfs* vfs, int size, char* out) {
  RealVfs(vfs)->xDlError(RealVfs(vfs), size, out);
}
void (*DlSym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
  return RealVfs(vfs)->xDlSym(RealVfs(vfs), handle, symbol);
}
void DlClose(sqlite3_vfs* vfs, void* handle) {
  RealVfs(vfs)->xDlClose(RealVfs(vfs), handle);
}
int Randomness(sqlite3_vfs* vfs, int size, char* out) {
  return RealVfs(vfs)->xRandomness(RealVfs(vfs), size, out);
}
int Sleep(sqlite3_vfs* vfs, int micros) {
  return RealVfs(vfs)->xSleep(RealVfs(vfs), micros);
}
int CurrentTime(sqlite3_vfs* vfs, double* out) {
  return RealVfs(vfs)->xCurrentTime(RealVfs(vfs), out);
}
int GetLastError(sqlite3_vfs* vfs, int size, char* out) {
  return RealVfs(vfs)->xGetLastError(RealVfs(vfs), size, out);
}
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return RealVfs(vfs)->xCurrentTimeInt64(RealVfs(vfs), out);
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
  registration->real = real;
  registration->owner = new FaultInjectionVfs(name);
  sqlite3_vfs& vfs = registration->vfs;
  vfs.iVersion = 2;
  vfs.szOsFile = static_cast<int>(sizeof(WrappedFile)) + real->szOsFile;
  vfs.mxPathname = real->mxPathname;
  vfs.zName = registration->owner->name_.c_str();
  vfs.xOpen = Open;
  vfs.xDelete = Delete;
  vfs.xAccess = Access;
  vfs.xFullPathname = FullPathname;
  vfs.xDlOpen = DlOpen;
  vfs.xDlError = DlError;
  vfs.xDlSym = DlSym;
  vfs.xDlClose = DlClose;
  vfs.xRandomness = Randomness;
  vfs.xSleep = Sleep;
  vfs.xCurrentTime = CurrentTime;
  vfs.xGetLastError = GetLastError;
  vfs.xCurrentTimeInt64 = CurrentTimeInt64;
  if (int rc = sqlite3_vfs_register(&vfs, /*makeDflt=*/0); rc != SQLITE_OK) {
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
