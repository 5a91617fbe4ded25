#include "base/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"

namespace taskd {

struct Sha256::Context {
  Context() : md(EVP_MD_CTX_new()) {
    // Fails only when out of memory: as a failed allocation does.
    if (md == nullptr || EVP_DigestInit_ex(md, EVP_sha256(), nullptr) != 1) {
      std::abort();
    }
  }
  ~Context() { EVP_MD_CTX_free(md); }
  EVP_MD_CTX* md;
};

Sha256::Sha256() : context_(std::make_unique<Context>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

std::string Sha256::Of(absl::string_view data) {
  Sha256 hash;
  hash.Update(data);
  return hash.Digest();
}

void Sha256::Update(absl::string_view data) {
  EVP_DigestUpdate(context_->md, data.data(), data.size());
}

std::string Sha256::Digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context_->md, digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

std::string Sha256::HexDigest() { return absl::BytesToHexString(Digest()); }

}  // namespace taskd
