// Sha256: SHA-256 of data given in pieces (OpenSSL's, behind one small
// type), for the backup stream's checksum on both ends and the token file's
// hashes.
//
//   Sha256 hash;
//   hash.Update(chunk1);
//   hash.Update(chunk2);
//   std::string hex = hash.HexDigest();  // 64 lowercase hex digits
//
//   std::string raw = Sha256::Of(token);  // 32 bytes
//
// Not thread-safe; movable, not copyable.
#ifndef TASKD_BASE_SHA256_H_
#define TASKD_BASE_SHA256_H_

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace taskd {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  // The digest of `data` as 32 raw bytes.
  static std::string Of(absl::string_view data);

  void Update(absl::string_view data);
  // The digest of everything given to Update, as 32 raw bytes or 64
  // lowercase hex digits. Call one of them once; the object is spent then.
  std::string Digest();
  std::string HexDigest();

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

}  // namespace taskd

#endif  // TASKD_BASE_SHA256_H_
