#include "query/page_token.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace taskd {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kKey[] = "0123456789abcdef0123456789abcdef";
constexpr char kQuery[] = "filter=state = started\norder_by=id asc";

std::vector<FieldValue> SampleCursor() {
  return {int64_t{3}, int64_t{1'793'000'000'000'000}, std::string("t-0001")};
}

void ExpectRejected(const PageTokenCodec& codec, const std::string& token,
                    const std::string& query = kQuery) {
  auto decoded = codec.Decode(token, query);
  ASSERT_FALSE(decoded.ok()) << "accepted: " << token;
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()),
              StartsWith("page_token: "));
}

TEST(PageTokenTest, RoundTrips) {
  const PageTokenCodec codec(kKey);
  const std::vector<std::vector<FieldValue>> cursors = {
      {},
      SampleCursor(),
      {std::string()},
      {int64_t{0}},
      {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
       int64_t{-1}},
      {std::string("\0\xff\n\"", 4), std::string(8 * 1024, 'x')},
      std::vector<FieldValue>(32, FieldValue(std::string("v"))),
  };
  for (const auto& cursor : cursors) {
    const std::string token = codec.Encode(kQuery, cursor);
    auto decoded = codec.Decode(token, kQuery);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, cursor);
  }
}

TEST(PageTokenTest, IsUrlSafeWithoutPadding) {
  const PageTokenCodec codec(kKey);
  for (size_t n = 0; n < 6; ++n) {
    const std::string token =
        codec.Encode(kQuery, {std::string(n, '\xfb'), int64_t{-1}});
    EXPECT_FALSE(token.empty());
    for (char c : token) {
      EXPECT_TRUE((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '-' || c == '_')
          << token;
    }
  }
}

TEST(PageTokenTest, Deterministic) {
  const PageTokenCodec codec(kKey);
  EXPECT_EQ(codec.Encode(kQuery, SampleCursor()),
            codec.Encode(kQuery, SampleCursor()));
}

TEST(PageTokenTest, RejectsAnotherQuery) {
  const PageTokenCodec codec(kKey);
  const std::string token = codec.Encode(kQuery, SampleCursor());
  for (const std::string& other :
       {std::string(), std::string(kQuery) + " ", std::string("x")}) {
    auto decoded = codec.Decode(token, other);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(decoded.status().message(),
              "page_token: was issued for a different filter or order_by");
  }
  // The empty query is a query like any other.
  const std::string unscoped = codec.Encode("", SampleCursor());
  EXPECT_TRUE(codec.Decode(unscoped, "").ok());
  EXPECT_FALSE(codec.Decode(unscoped, kQuery).ok());
}

TEST(PageTokenTest, RejectsAnotherKey) {
  const std::string token = PageTokenCodec(kKey).Encode(kQuery, SampleCursor());
  ExpectRejected(PageTokenCodec("another key"), token);
  ExpectRejected(PageTokenCodec(""), token);
  // An empty key is unusual but works.
  const PageTokenCodec empty_key("");
  EXPECT_TRUE(empty_key.Decode(empty_key.Encode(kQuery, {}), kQuery).ok());
}

TEST(PageTokenTest, RejectsEveryEditedByte) {
  const PageTokenCodec codec(kKey);
  const std::string token = codec.Encode(kQuery, SampleCursor());
  std::string raw;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(token, &raw));
  for (size_t i = 0; i < raw.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80, 0xff}) {
      std::string edited = raw;
      edited[i] = static_cast<char>(edited[i] ^ mask);
      ExpectRejected(codec, absl::WebSafeBase64Escape(edited));
    }
  }
}

TEST(PageTokenTest, RejectsEveryEditedCharacter) {
  const PageTokenCodec codec(kKey);
  const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  // Three lengths, so that the token's byte count takes every value mod 3:
  // then the last character sometimes has low bits that carry no data, and a
  // decoder that ignored them would accept an edit there.
  for (const char* id : {"t-0001", "t-00001", "t-000001"}) {
    const std::string token = codec.Encode(kQuery, {int64_t{3}, id});
    for (size_t i = 0; i < token.size(); ++i) {
      for (char c : alphabet) {
        if (c == token[i]) continue;
        std::string edited = token;
        edited[i] = c;
        ExpectRejected(codec, edited);
      }
      for (char c : {'=', '+', '/', ' ', '\0', '.'}) {
        std::string edited = token;
        edited[i] = c;
        ExpectRejected(codec, edited);
      }
    }
  }
}

TEST(PageTokenTest, RejectsTruncationAndExtension) {
  const PageTokenCodec codec(kKey);
  const std::string token = codec.Encode(kQuery, SampleCursor());
  for (size_t n = 0; n < token.size(); ++n) {
    ExpectRejected(codec, token.substr(0, n));
    ExpectRejected(codec, token.substr(n + 1));
  }
  for (const char* tail : {"A", "AA", "AAA", "AAAA", "=", "==", " ", "\n"}) {
    ExpectRejected(codec, token + tail);
  }
}

TEST(PageTokenTest, RejectsGarbage) {
  const PageTokenCodec codec(kKey);
  for (const std::string& garbage :
       {std::string(), std::string("!"), std::string("===="),
        std::string("not a token"), std::string("AAAA"), std::string(1000, 'A'),
        std::string(100, '\xff'), std::string("\0\0\0\0", 4),
        std::string(40 * 1024, 'A')}) {
    ExpectRejected(codec, garbage);
  }
}

TEST(PageTokenTest, RejectsOtherVersions) {
  const PageTokenCodec codec(kKey);
  std::string raw;
  ASSERT_TRUE(
      absl::WebSafeBase64Unescape(codec.Encode(kQuery, SampleCursor()), &raw));
  for (int version : {0, 2, 255}) {
    raw[0] = static_cast<char>(version);
    auto decoded = codec.Decode(absl::WebSafeBase64Escape(raw), kQuery);
    ASSERT_FALSE(decoded.ok());
    EXPECT_THAT(std::string(decoded.status().message()),
                AllOf(StartsWith("page_token: "), HasSubstr("version")));
  }
}

// The payload parser must hold even against correctly sealed bytes, so these
// tokens are sealed here with the real key. This repeats the layout from
// page_token.cc on purpose: a change to it should be a deliberate one.
class SealedPayloadTest : public ::testing::Test {
 protected:
  std::string Seal(const std::string& values) const {
    std::string raw(1, '\x01');
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(kQuery), sizeof(kQuery) - 1,
           digest);
    raw.append(reinterpret_cast<const char*>(digest), 16);
    raw += values;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_length = 0;
    HMAC(EVP_sha256(), kKey, sizeof(kKey) - 1,
         reinterpret_cast<const unsigned char*>(raw.data()), raw.size(), mac,
         &mac_length);
    raw.append(reinterpret_cast<const char*>(mac), 16);
    return absl::WebSafeBase64Escape(raw);
  }

  const PageTokenCodec codec_{kKey};
};

TEST_F(SealedPayloadTest, TheLayoutIsWhatTheTestAssumes) {
  const std::string values("\x02\x01\0\0\0\0\0\0\0\x07\x02\0\0\0\x02id", 17);
  auto decoded = codec_.Decode(Seal(values), kQuery);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, (std::vector<FieldValue>{int64_t{7}, std::string("id")}));
  EXPECT_EQ(Seal(values), codec_.Encode(kQuery, *decoded));
}

TEST_F(SealedPayloadTest, RejectsMalformedPayloads) {
  const std::vector<std::string> bad = {
      std::string(),                     // no count
      std::string("\x01", 1),            // a value missing
      std::string("\x01\x03", 2),        // unknown tag
      std::string("\x01\x00", 2),        // unknown tag 0
      std::string("\x01\x01\0\0\0", 5),  // short int64
      std::string("\x01\x02\0\0", 4),    // short length
      std::string("\x01\x02\0\0\0\x05"
                  "abc",
                  9),                              // short string
      std::string("\x01\x02\xff\xff\xff\xff", 6),  // huge length
      std::string("\x01\x02\0\0\x20\x01", 6),      // over the string bound
      std::string("\x00\x00", 2),                  // trailing byte
      std::string("\x21", 1),                      // over the value bound
      std::string("\xff", 1),                      // over the value bound
  };
  for (const std::string& values : bad) {
    ExpectRejected(codec_, Seal(values));
  }
  // At the bounds: 32 values, an 8 KiB string.
  std::string many(1, '\x20');
  for (int i = 0; i < 32; ++i) many += std::string("\x02\0\0\0\0", 5);
  EXPECT_TRUE(codec_.Decode(Seal(many), kQuery).ok());
  std::string big("\x01\x02\0\0\x20\0", 6);
  big += std::string(8 * 1024, 'b');
  EXPECT_TRUE(codec_.Decode(Seal(big), kQuery).ok());
}

}  // namespace
}  // namespace taskd
