#include "storage/vfs_shim.h"

namespace taskd::sqlite {
namespace {

sqlite3_file* Real(sqlite3_file* file) { return AsShimFile(file)->real(); }

// ---- sqlite3_io_methods that pass through.

int Close(sqlite3_file* file) {
  return Real(file)->pMethods->xClose(Real(file));
}
int Read(sqlite3_file* file, void* buffer, int amount, sqlite3_int64 offset) {
  return Real(file)->pMethods->xRead(Real(file), buffer, amount, offset);
}
int Write(sqlite3_file* file, const void* buffer, int amount,
          sqlite3_int64 offset) {
  return Real(file)->pMethods->xWrite(Real(file), buffer, amount, offset);
}
int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  return Real(file)->pMethods->xTruncate(Real(file), size);
}
int Sync(sqlite3_file* file, int flags) {
  return Real(file)->pMethods->xSync(Real(file), flags);
}
int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  return Real(file)->pMethods->xFileSize(Real(file), size);
}
int Lock(sqlite3_file* file, int level) {
  return Real(file)->pMethods->xLock(Real(file), level);
}
int Unlock(sqlite3_file* file, int level) {
  return Real(file)->pMethods->xUnlock(Real(file), level);
}
int CheckReservedLock(sqlite3_file* file, int* out) {
  return Real(file)->pMethods->xCheckReservedLock(Real(file), out);
}
int FileControl(sqlite3_file* file, int op, void* arg) {
  return Real(file)->pMethods->xFileControl(Real(file), op, arg);
}
int SectorSize(sqlite3_file* file) {
  return Real(file)->pMethods->xSectorSize(Real(file));
}
int DeviceCharacteristics(sqlite3_file* file) {
  return Real(file)->pMethods->xDeviceCharacteristics(Real(file));
}
int ShmMap(sqlite3_file* file, int region, int size, int extend,
           void volatile** out) {
  return Real(file)->pMethods->xShmMap(Real(file), region, size, extend, out);
}
int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  return Real(file)->pMethods->xShmLock(Real(file), offset, n, flags);
}
void ShmBarrier(sqlite3_file* file) {
  Real(file)->pMethods->xShmBarrier(Real(file));
}
int ShmUnmap(sqlite3_file* file, int delete_flag) {
  return Real(file)->pMethods->xShmUnmap(Real(file), delete_flag);
}
int Fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  return Real(file)->pMethods->xFetch(Real(file), offset, amount, out);
}
int Unfetch(sqlite3_file* file, sqlite3_int64 offset, void* page) {
  return Real(file)->pMethods->xUnfetch(Real(file), offset, page);
}

// ---- sqlite3_vfs methods that pass through.

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags,
         int* out_flags) {
  static const ShimMethods kPassThrough = ShimMethods::Replacing({});
  return OpenShimFile(ShimRealVfs(vfs), kPassThrough, name, file, flags,
                      out_flags);
}
int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  return ShimRealVfs(vfs)->xDelete(ShimRealVfs(vfs), name, sync_dir);
}
int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  return ShimRealVfs(vfs)->xAccess(ShimRealVfs(vfs), name, flags, out);
}
int FullPathname(sqlite3_vfs* vfs, const char* name, int size, char* out) {
  return ShimRealVfs(vfs)->xFullPathname(ShimRealVfs(vfs), name, size, out);
}
void* DlOpen(sqlite3_vfs* vfs, const char* name) {
  return ShimRealVfs(vfs)->xDlOpen(ShimRealVfs(vfs), name);
}
void DlError(sqlite3_vfs* vfs, int size, char* out) {
  ShimRealVfs(vfs)->xDlError(ShimRealVfs(vfs), size, out);
}
void (*DlSym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
  return ShimRealVfs(vfs)->xDlSym(ShimRealVfs(vfs), handle, symbol);
}
void DlClose(sqlite3_vfs* vfs, void* handle) {
  ShimRealVfs(vfs)->xDlClose(ShimRealVfs(vfs), handle);
}
int Randomness(sqlite3_vfs* vfs, int size, char* out) {
  return ShimRealVfs(vfs)->xRandomness(ShimRealVfs(vfs), size, out);
}
int Sleep(sqlite3_vfs* vfs, int micros) {
  return ShimRealVfs(vfs)->xSleep(ShimRealVfs(vfs), micros);
}
int CurrentTime(sqlite3_vfs* vfs, double* out) {
  return ShimRealVfs(vfs)->xCurrentTime(ShimRealVfs(vfs), out);
}
int GetLastError(sqlite3_vfs* vfs, int size, char* out) {
  return ShimRealVfs(vfs)->xGetLastError(ShimRealVfs(vfs), size, out);
}
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return ShimRealVfs(vfs)->xCurrentTimeInt64(ShimRealVfs(vfs), out);
}

}  // namespace

ShimMethods ShimMethods::Replacing(const Replaced& replaced) {
  ShimMethods result{};
  for (int version = 1; version <= 3; ++version) {
    sqlite3_io_methods& methods = result.by_version[version];
    methods.iVersion = version;
    methods.xClose = replaced.close != nullptr ? replaced.close : Close;
    methods.xRead = Read;
    methods.xWrite = replaced.write != nullptr ? replaced.write : Write;
    methods.xTruncate =
        replaced.truncate != nullptr ? replaced.truncate : Truncate;
    methods.xSync = replaced.sync != nullptr ? replaced.sync : Sync;
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
  }
  return result;
}

int OpenShimFile(sqlite3_vfs* real, const ShimMethods& methods,
                 const char* name, sqlite3_file* file, int flags,
                 int* out_flags) {
  ShimFile* shim = AsShimFile(file);
  shim->owner = nullptr;
  shim->state = nullptr;
  shim->kind = (flags & SQLITE_OPEN_MAIN_DB) ? ShimFileKind::kMainDb
               : (flags & SQLITE_OPEN_WAL)   ? ShimFileKind::kWal
                                             : ShimFileKind::kOther;
  sqlite3_file* wrapped = shim->real();
  wrapped->pMethods = nullptr;
  int rc = real->xOpen(real, name, wrapped, flags, out_flags);
  // SQLite calls xClose on a file whose pMethods is set, even after a failed
  // open; mirror what the wrapped VFS did.
  if (wrapped->pMethods == nullptr) {
    file->pMethods = nullptr;
  } else {
    const int version = wrapped->pMethods->iVersion;
    file->pMethods = &methods.by_version[version < 1   ? 1
                                         : version > 3 ? 3
                                                       : version];
  }
  return rc;
}

sqlite3_vfs ShimVfs(sqlite3_vfs* real, const char* name) {
  sqlite3_vfs vfs{};
  vfs.iVersion = 2;
  vfs.szOsFile = static_cast<int>(sizeof(ShimFile)) + real->szOsFile;
  vfs.mxPathname = real->mxPathname;
  vfs.zName = name;
  vfs.pAppData = real;
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
  return vfs;
}

}  // namespace taskd::sqlite
