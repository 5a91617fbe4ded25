// FsyncGuardVfs over the fault-injection VFS (the disk): a write whose sync
// failed is on the disk after the next successful sync; without the guard
// it is not. The kept copy is bounded.
#include "storage/fsync_guard_vfs.h"

#include <sqlite3.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "storage/fault_injection_vfs.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using sqlite::FaultInjectionVfs;
using sqlite::FsyncGuardVfs;

constexpr int kPage = 4096;

// One file opened as a write-ahead log through the VFS called `vfs`.
class LogFile {
 public:
  LogFile(const std::string& vfs, const std::string& path)
      : vfs_(sqlite3_vfs_find(vfs.c_str())),
        memory_(new char[vfs_->szOsFile]()) {
    int out_flags = 0;
    rc_ = vfs_->xOpen(
        vfs_, path.c_str(), file(),
        SQLITE_OPEN_WAL | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
        &out_flags);
  }
  ~LogFile() {
    if (file()->pMethods != nullptr) file()->pMethods->xClose(file());
  }
  int open_rc() const { return rc_; }
  int Write(char fill, int64_t offset) {
    const std::string page(kPage, fill);
    return file()->pMethods->xWrite(file(), page.data(), kPage, offset);
  }
  int Sync() { return file()->pMethods->xSync(file(), SQLITE_SYNC_NORMAL); }

 private:
  sqlite3_file* file() {
    return reinterpret_cast<sqlite3_file*>(memory_.get());
  }
  sqlite3_vfs* vfs_;
  std::unique_ptr<char[]> memory_;
  int rc_ = SQLITE_OK;
};

class FsyncGuardVfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    disk_ = FaultInjectionVfs::Register("guard-test-disk");
    // The log's database must exist (the unix VFS copies its mode).
    std::string db = dir_.File("x.db");
    std::FILE* f = std::fopen(db.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
    path_ = db + "-wal";
    disk_->TrackUnsynced();
  }
  void TearDown() override { disk_->Clear(); }

  // Page 0 written, its sync failed, page 1 written and synced; then the
  // power goes. Returns the pages the disk kept, one fill byte each ('-' for
  // a page that is not all one byte).
  std::string FailThenSync(const std::string& vfs) {
    {
      LogFile log(vfs, path_);
      EXPECT_EQ(log.open_rc(), SQLITE_OK);
      EXPECT_EQ(log.Write('a', 0), SQLITE_OK);
      disk_->FailSyncs({SQLITE_IOERR_FSYNC, 0, 1, FaultInjectionVfs::kWal});
      EXPECT_EQ(log.Sync(), SQLITE_IOERR_FSYNC);
      EXPECT_EQ(log.Write('b', kPage), SQLITE_OK);
      EXPECT_EQ(log.Sync(), SQLITE_OK);
      disk_->CutPowerAfter(0);
    }
    std::string error;
    disk_->LosePower(FaultInjectionVfs::Loss::kUnsynced, 1, &error);
    EXPECT_EQ(error, "");
    return Pages();
  }

  std::string Pages() {
    std::ifstream in(path_, std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
    std::string pages;
    for (size_t at = 0; at < content.size(); at += kPage) {
      std::string page = content.substr(at, kPage);
      const bool same = page.size() == kPage &&
                        page.find_first_not_of(page[0]) == std::string::npos;
      pages += same ? (page[0] == '\0' ? '0' : page[0]) : '-';
    }
    return pages;
  }

  FaultInjectionVfs* disk_ = nullptr;
  testing::TempDir dir_;
  std::string path_;
};

TEST_F(FsyncGuardVfsTest, TheDiskAloneLosesAWriteWhoseSyncFailed) {
  // The premise: the model drops what a failed sync did not write, even
  // after a later sync succeeds (as Linux does).
  EXPECT_EQ(FailThenSync(disk_->name()), "0b");
}

TEST_F(FsyncGuardVfsTest, TheNextSyncWritesItAgain) {
  EXPECT_EQ(FailThenSync(FsyncGuardVfs::Register(disk_->name(), {})), "ab");
}

TEST_F(FsyncGuardVfsTest, TheCopyIsBoundedBySyncingAndThenByFailingWrites) {
  FsyncGuardVfs::Options options;
  options.max_pending_bytes = 4 * kPage;
  const std::string& vfs = FsyncGuardVfs::Register(disk_->name(), options);
  {
    LogFile log(vfs, path_);
    ASSERT_EQ(log.open_rc(), SQLITE_OK);
    // Past the bound, the guard syncs by itself.
    const int64_t syncs = disk_->syncs();
    for (int i = 0; i < 5; ++i) ASSERT_EQ(log.Write('c', i * kPage), SQLITE_OK);
    EXPECT_EQ(disk_->syncs(), syncs + 1);
    // With every sync failing, the copy fills up and writes fail.
    disk_->FailSyncs({SQLITE_IOERR_FSYNC, 0, -1, FaultInjectionVfs::kWal});
    int written = 0;
    while (written < 10 && log.Write('d', (5 + written) * kPage) == SQLITE_OK) {
      ++written;
    }
    // The copy holds the page written after the guard's sync, and room for
    // three more.
    EXPECT_EQ(written, 3);
    EXPECT_EQ(log.Write('d', (5 + written) * kPage), SQLITE_IOERR_WRITE);
    // The disk works again: the next write goes through, and a sync puts
    // every page written before on the disk.
    disk_->Clear();
    ASSERT_EQ(log.Write('e', (5 + written) * kPage), SQLITE_OK);
    ASSERT_EQ(log.Sync(), SQLITE_OK);
    disk_->CutPowerAfter(0);
  }
  std::string error;
  disk_->LosePower(FaultInjectionVfs::Loss::kUnsynced, 1, &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(Pages(), "cccccddde");
}

}  // namespace
}  // namespace taskd
