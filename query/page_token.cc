// Token layout, before base64url (no padding):
//
//   version (1 byte, kVersion)
//   payload:
//     query digest (16 bytes: SHA-256 of `query`, truncated)
//     value count (1 byte)
//     per value: tag (1 byte) then
//       kTagInt64:  8 bytes, big-endian two's complement
//       kTagString: 4-byte big-endian length, then the bytes
//   MAC (16 bytes: HMAC-SHA256(key, version | payload), truncated)
//
// The query is bound through a digest inside the MAC'd bytes rather than by
// mixing it into the MAC key, so that a token replayed against another query
// can be told apart from a forged one and reported as such.
#include "query/page_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace taskd {
namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kDigestBytes = 16;
constexpr size_t kMacBytes = 16;
constexpr uint8_t kTagInt64 = 1;
constexpr uint8_t kTagString = 2;

// Bounds on what Decode accepts. An order has at most one key per orderable
// field, so a handful of values is all a real token carries; the string bound
// is generous because ids are chosen by callers. The text bound is checked
// first so that base64 decoding never works on a huge input.
constexpr size_t kMaxValues = 32;
constexpr size_t kMaxStringBytes = 8 * 1024;
constexpr size_t kMaxTokenChars = 32 * 1024;
constexpr size_t kMinTokenBytes = 1 + kDigestBytes + 1 + kMacBytes;

std::string QueryDigest(std::string_view query) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(query.data()), query.size(),
         digest);
  return std::string(reinterpret_cast<const char*>(digest), kDigestBytes);
}

// False only if OpenSSL itself fails (out of memory).
bool ComputeMac(const std::string& key, std::string_view data,
                unsigned char mac[EVP_MAX_MD_SIZE]) {
  unsigned int mac_length = 0;
  // std::string::data() is never null, which HMAC needs even for an empty
  // key.
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(),
           mac, &mac_length) == nullptr) {
    return false;
  }
  return mac_length >= kMacBytes;
}

void AppendUint(uint64_t value, int bytes, std::string* out) {
  for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

// Debian's Abseil is built with its own absl::string_view (not an alias of
// std::string_view), so views cross into Abseil through this.
absl::string_view Absl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

absl::Status Malformed() {
  return absl::InvalidArgumentError(
      "page_token: malformed token; pass next_page_token back unchanged");
}

// Reads the payload after the digest. Every read is bounds-checked against
// `data`, so even bytes that somehow passed the MAC cannot read out of range.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  bool ReadUint(int bytes, uint64_t* value) {
    if (data_.size() < static_cast<size_t>(bytes)) return false;
    uint64_t result = 0;
    for (int i = 0; i < bytes; ++i) {
      result = (result << 8) | static_cast<uint8_t>(data_[i]);
    }
    data_.remove_prefix(bytes);
    *value = result;
    return true;
  }

  bool ReadBytes(size_t length, std::string* out) {
    if (data_.size() < length) return false;
    out->assign(data_.data(), length);
    data_.remove_prefix(length);
    return true;
  }

  bool AtEnd() const { return data_.empty(); }

 private:
  std::string_view data_;
};

}  // namespace

PageTokenCodec::PageTokenCodec(std::string key) : key_(std::move(key)) {}

std::string PageTokenCodec::Encode(
    std::string_view query, const std::vector<FieldValue>& cursor) const {
  // A cursor beyond Decode's bounds (more than kMaxValues values, a string
  // over kMaxStringBytes) still encodes, but its token will be refused; the
  // callers keep order keys and ids well inside them.
  std::string raw;
  raw.push_back(static_cast<char>(kVersion));
  raw += QueryDigest(query);
  raw.push_back(static_cast<char>(cursor.size()));
  for (const FieldValue& value : cursor) {
    if (const auto* number = std::get_if<int64_t>(&value)) {
      raw.push_back(static_cast<char>(kTagInt64));
      AppendUint(static_cast<uint64_t>(*number), 8, &raw);
    } else {
      const std::string& text = std::get<std::string>(value);
      raw.push_back(static_cast<char>(kTagString));
      AppendUint(text.size(), 4, &raw);
      raw += text;
    }
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  if (!ComputeMac(key_, raw, mac)) {
    // Returning any token here would be wrong: an empty one reads as "end of
    // list", and an unsealed one would be rejected on the next call.
    std::fprintf(stderr, "page_token: HMAC-SHA256 failed\n");
    std::abort();
  }
  raw.append(reinterpret_cast<const char*>(mac), kMacBytes);
  return absl::WebSafeBase64Escape(raw);
}

absl::StatusOr<std::vector<FieldValue>> PageTokenCodec::Decode(
    std::string_view token, std::string_view query) const {
  if (token.size() > kMaxTokenChars) {
    return absl::InvalidArgumentError("page_token: token is too long");
  }
  std::string raw;
  // Re-encoding must reproduce the text exactly: the decoder tolerates
  // padding and ignores stray low bits in the last character, and an edited
  // token should never be accepted just because it decodes to the same bytes.
  if (!absl::WebSafeBase64Unescape(Absl(token), &raw) ||
      absl::WebSafeBase64Escape(raw) != Absl(token)) {
    return absl::InvalidArgumentError(
        "page_token: not a page token (bad base64url)");
  }
  if (raw.size() < kMinTokenBytes) return Malformed();
  if (static_cast<uint8_t>(raw[0]) != kVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: unsupported token version ",
                     static_cast<int>(static_cast<uint8_t>(raw[0])),
                     "; restart the listing without a page_token"));
  }
  const std::string_view sealed =
      std::string_view(raw).substr(0, raw.size() - kMacBytes);
  const std::string_view mac = std::string_view(raw).substr(sealed.size());
  unsigned char expected[EVP_MAX_MD_SIZE];
  if (!ComputeMac(key_, sealed, expected) ||
      CRYPTO_memcmp(expected, mac.data(), kMacBytes) != 0) {
    return absl::InvalidArgumentError(
        "page_token: token was altered or issued by another server");
  }
  const std::string digest = QueryDigest(query);
  if (CRYPTO_memcmp(digest.data(), sealed.data() + 1, kDigestBytes) != 0) {
    return absl::InvalidArgumentError(
        "page_token: was issued for a different filter or order_by");
  }

  Reader reader(sealed.substr(1 + kDigestBytes));
  uint64_t count = 0;
  if (!reader.ReadUint(1, &count) || count > kMaxValues) return Malformed();
  std::vector<FieldValue> cursor;
  cursor.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t tag = 0;
    if (!reader.ReadUint(1, &tag)) return Malformed();
    if (tag == kTagInt64) {
      uint64_t bits = 0;
      if (!reader.ReadUint(8, &bits)) return Malformed();
      cursor.emplace_back(static_cast<int64_t>(bits));
    } else if (tag == kTagString) {
      uint64_t length = 0;
      std::string text;
      if (!reader.ReadUint(4, &length) || length > kMaxStringBytes ||
          !reader.ReadBytes(length, &text)) {
        return Malformed();
      }
      cursor.emplace_back(std::move(text));
    } else {
      return Malformed();
    }
  }
  if (!reader.AtEnd()) return Malformed();
  return cursor;
}

}  // namespace taskd
