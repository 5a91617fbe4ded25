// libFuzzer target for PageTokenCodec. Two halves per input:
//   - Decode(bytes) must never crash and must fail with "page_token: ..."
//     (a forged MAC is out of a fuzzer's reach, so any success is a bug unless
//     the bytes are a token Encode could have produced);
//   - a cursor built from the bytes must survive Encode/Decode unchanged, be
//     refused for another query, and be refused after any one-character edit.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "query/page_token.h"

namespace {

constexpr char kQuery[] = "filter=state = started\norder_by=id asc";
constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

[[noreturn]] void Fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "page_token_fuzzer: %s: %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

const taskd::PageTokenCodec& Codec() {
  static const auto* codec =
      new taskd::PageTokenCodec("page-token-fuzzer-key-0123456789");
  return *codec;
}

void CheckRejected(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kInvalidArgument ||
      status.message().substr(0, 12) != "page_token: ") {
    Fail("unexpected error", status.ToString());
  }
}

// Reads the input as a little cursor language: a value count, then per value
// a tag byte, then 8 bytes of int64 or a length byte and that many bytes.
std::vector<taskd::FieldValue> CursorFrom(std::string_view bytes) {
  std::vector<taskd::FieldValue> cursor;
  if (bytes.empty()) return cursor;
  size_t count = static_cast<uint8_t>(bytes[0]) % 9;
  bytes.remove_prefix(1);
  while (count-- > 0 && !bytes.empty()) {
    const bool is_int = (static_cast<uint8_t>(bytes[0]) & 1) == 0;
    bytes.remove_prefix(1);
    if (is_int) {
      uint64_t bits = 0;
      for (int i = 0; i < 8 && !bytes.empty(); ++i) {
        bits = (bits << 8) | static_cast<uint8_t>(bytes[0]);
        bytes.remove_prefix(1);
      }
      cursor.emplace_back(static_cast<int64_t>(bits));
    } else {
      size_t length = bytes.empty() ? 0 : static_cast<uint8_t>(bytes[0]);
      if (!bytes.empty()) bytes.remove_prefix(1);
      if (length > bytes.size()) length = bytes.size();
      cursor.emplace_back(std::string(bytes.substr(0, length)));
      bytes.remove_prefix(length);
    }
  }
  return cursor;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const taskd::PageTokenCodec& codec = Codec();

  auto decoded = codec.Decode(bytes, kQuery);
  if (decoded.ok()) {
    if (codec.Encode(kQuery, *decoded) != bytes) {
      Fail("accepted a token Encode would not produce", bytes);
    }
  } else {
    CheckRejected(decoded.status());
  }

  const std::vector<taskd::FieldValue> cursor = CursorFrom(bytes);
  const std::string token = codec.Encode(kQuery, cursor);
  auto round_trip = codec.Decode(token, kQuery);
  if (!round_trip.ok())
    Fail("round trip failed", std::string(round_trip.status().message()));
  if (*round_trip != cursor) Fail("round trip changed the cursor", token);

  auto other_query = codec.Decode(token, bytes);
  if (other_query.ok() && bytes != kQuery) {
    Fail("accepted for another query", token);
  }

  // One edit at a position and to a character chosen by the input.
  const size_t seed = size == 0 ? 0 : static_cast<uint8_t>(data[size - 1]);
  std::string edited = token;
  const size_t pos = (size * 31 + seed) % edited.size();
  char replacement = kAlphabet[seed % 64];
  if (replacement == edited[pos]) replacement = kAlphabet[(seed + 1) % 64];
  edited[pos] = replacement;
  auto tampered = codec.Decode(edited, kQuery);
  if (tampered.ok()) Fail("accepted an edited token", edited);
  CheckRejected(tampered.status());
  return 0;
}
