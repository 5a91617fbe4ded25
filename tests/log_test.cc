// The logger's two formats (base/log.h): the text line as it always was, and
// JSON lines that are valid JSON in valid UTF-8 whatever the message holds
// (checked against Python's json and UTF-8 decoder); then --log_format on
// the taskd binary.
#include "base/log.h"

#include <signal.h>

#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/taskd_process.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const absl::Time kTime =
    absl::FromUnixMicros(1795996325123456);      // 2026-11-29T23:52:05.123456Z
constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

TEST(LogFormatTest, Parse) {
  LogFormat format = LogFormat::kJson;
  EXPECT_TRUE(ParseLogFormat("text", &format));
  EXPECT_EQ(format, LogFormat::kText);
  EXPECT_TRUE(ParseLogFormat("json", &format));
  EXPECT_EQ(format, LogFormat::kJson);
  EXPECT_FALSE(ParseLogFormat("JSON", &format));
  EXPECT_FALSE(ParseLogFormat("", &format));
  EXPECT_EQ(format, LogFormat::kJson);  // untouched on failure
}

TEST(LogFormatTest, TextLine) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, kTime, LogLevel::kWarning,
                          "taskd serving port=1"),
            "2026-11-29T23:52:05.123456Z WARNING taskd serving port=1\n");
}

TEST(LogFormatTest, JsonLine) {
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, kTime, LogLevel::kInfo,
                          "taskd serving port=1"),
            R"({"time":"2026-11-29T23:52:05.123456Z","level":"info",)"
            R"("msg":"taskd serving port=1"})"
            "\n");
  EXPECT_THAT(FormatLogLine(LogFormat::kJson, kTime, LogLevel::kDebug, ""),
              HasSubstr(R"("level":"debug","msg":""})"));
  EXPECT_THAT(FormatLogLine(LogFormat::kJson, kTime, LogLevel::kWarning, ""),
              HasSubstr(R"("level":"warning")"));
  EXPECT_THAT(FormatLogLine(LogFormat::kJson, kTime, LogLevel::kError, ""),
              HasSubstr(R"("level":"error")"));
}

TEST(JsonEscapeTest, QuotesAndBackslashes) {
  EXPECT_EQ(JsonEscape(R"(say "hi" \o/)"), R"(say \"hi\" \\o/)");
}

TEST(JsonEscapeTest, ControlCharacters) {
  EXPECT_EQ(JsonEscape("a\nb\rc\td"), R"(a\nb\rc\td)");
  EXPECT_EQ(JsonEscape(std::string("\0\x01\x1f\x7f", 4)),
            R"(\u0000\u0001\u001f\u007f)");
  EXPECT_EQ(JsonEscape("\x1b[31mred"), R"(\u001b[31mred)");
  // C1 controls (NEL among them) and the Unicode line separators, which
  // some readers take for line ends.
  EXPECT_EQ(JsonEscape("\xC2\x80\xC2\x85\xC2\x9F\xC2\xA0"),
            "\\u0080\\u0085\\u009f\xC2\xA0");
  EXPECT_EQ(JsonEscape("a\xE2\x80\xA8"
                       "b\xE2\x80\xA9"
                       "c\xE2\x80\xAA"),
            "a\\u2028b\\u2029c\xE2\x80\xAA");
}

TEST(JsonEscapeTest, KeepsValidUtf8) {
  const std::string text =
      "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xEF\xBF\xBF";
  EXPECT_EQ(JsonEscape(text), text);
}

TEST(JsonEscapeTest, ReplacesInvalidUtf8) {
  const std::string r = kReplacement;
  // A stray continuation byte, bytes that never occur, a truncated
  // sequence (at the end and before ASCII): one U+FFFD per maximal
  // subpart.
  EXPECT_EQ(JsonEscape("a\x80z"), "a" + r + "z");
  EXPECT_EQ(JsonEscape("\xFF\xFE"), r + r);
  EXPECT_EQ(JsonEscape("ab\xC3"), "ab" + r);
  EXPECT_EQ(JsonEscape("\xE2\x82z"), r + "z");
  EXPECT_EQ(JsonEscape("\xF0\x9F\x98!"), r + "!");
  // Overlong forms, surrogates and code points above U+10FFFF are not
  // UTF-8: each byte is its own maximal subpart.
  EXPECT_EQ(JsonEscape("\xC0\xAF"), r + r);
  EXPECT_EQ(JsonEscape("\xE0\x80\xAF"), r + r + r);
  EXPECT_EQ(JsonEscape("\xED\xA0\x80"), r + r + r);
  EXPECT_EQ(JsonEscape("\xF4\x90\x80\x80"), r + r + r + r);
  // A quote right after a truncated sequence is still escaped.
  EXPECT_EQ(JsonEscape("\xC3\""), r + "\\\"");
}

// Checks lines "HEX_OF_MESSAGE\tJSON_LINE" with Python: the whole input is
// strict UTF-8; each JSON line holds no raw control character or line
// separator and is an object of exactly time, level and msg
// (strings), and msg is the message as Python's decoder reads it with
// errors="replace" (which also follows Unicode's maximal-subpart rule).
// Prints "ok N" or what differs.
constexpr char kCheckLines[] = R"(
import json, sys
text = sys.stdin.buffer.read().decode("utf-8")  # strict
n = 0
for line in text.split("\n")[:-1]:
    hexmsg, _, jsonline = line.partition("\t")
    if any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f or ch in "\u2028\u2029"
           for ch in jsonline):
        sys.exit("raw control character or line separator: %r" % jsonline)
    obj = json.loads(jsonline)
    if sorted(obj) != ["level", "msg", "time"] or not all(
            isinstance(v, str) for v in obj.values()):
        sys.exit("bad object: " + jsonline)
    want = bytes.fromhex(hexmsg).decode("utf-8", errors="replace")
    if obj["msg"] != want:
        sys.exit("msg %r, want %r, from %s" % (obj["msg"], want, hexmsg))
    n += 1
print("ok", n)
)";

TEST(JsonEscapeTest, EveryLineIsJsonThatPythonReadsBack) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no python3";
  std::vector<std::string> messages = {"plain",
                                       "",
                                       "\"\\\"\\",
                                       "\xF4\x8F\xBF\xBF",
                                       "\xED\x9F\xBF",
                                       std::string(1, '\0'),
                                       "trailing backslash \\"};
  for (int c = 0; c < 256; ++c) {
    messages.push_back(std::string(1, static_cast<char>(c)));
    messages.push_back(
        absl::StrCat("x", std::string(1, static_cast<char>(c)), "\xC3\xA9"));
  }
  std::mt19937 rng(16);
  for (int i = 0; i < 3000; ++i) {
    std::string message(rng() % 24, '\0');
    for (char& c : message) {
      // Mostly bytes that make UTF-8 (or nearly): lead and continuation
      // bytes, ASCII, control characters.
      static constexpr unsigned char kBytes[] = {
          0x00, 0x09, 0x0a, 0x1f, 0x22, 0x41, 0x5c, 0x7f,
          0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2,
          0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
      c = static_cast<char>(rng() % 3 == 0 ? rng() % 256
                                           : kBytes[rng() % sizeof(kBytes)]);
    }
    messages.push_back(message);
  }
  std::string input;
  for (const std::string& message : messages) {
    std::string line =
        FormatLogLine(LogFormat::kJson, kTime, LogLevel::kInfo, message);
    ASSERT_EQ(line.find('\n'), line.size() - 1) << "one line per message";
    absl::StrAppend(&input, absl::BytesToHexString(message), "\t", line);
  }
  std::string out, err;
  int rc = testing::RunCommand({"/usr/bin/python3", "-c", kCheckLines}, input,
                               &out, &err);
  EXPECT_EQ(rc, 0) << err;
  EXPECT_EQ(out, absl::StrCat("ok ", messages.size(), "\n")) << err;
}

// taskd's stderr, checked with Python: every line a JSON object of time,
// level and msg. Returns "LEVEL MSG" per line.
std::vector<std::string> ParseJsonLog(const std::string& log) {
  static constexpr char kParse[] = R"(
import json, sys
for line in sys.stdin.buffer.read().decode("utf-8").split("\n")[:-1]:
    obj = json.loads(line)
    assert sorted(obj) == ["level", "msg", "time"], line
    assert obj["time"].endswith("Z"), line
    print(obj["level"], obj["msg"])
)";
  std::string out, err;
  int rc =
      testing::RunCommand({"/usr/bin/python3", "-c", kParse}, log, &out, &err);
  EXPECT_EQ(rc, 0) << err << "\n" << log;
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  return lines;
}

class TaskdLogFormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no python3";
  }
  testing::TaskdProcess::Options With(std::vector<std::string> flags) {
    testing::TaskdProcess::Options options;
    options.flags = std::move(flags);
    options.db_path = dir_.File("taskd.db");
    return options;
  }
  testing::TempDir dir_;
};

TEST_F(TaskdLogFormatTest, JsonFromStartToStop) {
  // The dashed spelling, as the README writes flags.
  testing::TaskdProcess taskd(With({"--log-format=json"}));
  absl::Status started = taskd.Start();
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_GT(taskd.port(), 0);  // the serving line's fields still parse
  EXPECT_EQ(taskd.Stop(SIGTERM), 0) << taskd.log();
  std::vector<std::string> lines = ParseJsonLog(taskd.log());
  EXPECT_THAT(lines, Contains(StartsWith("warning no --auth_tokens")));
  EXPECT_THAT(lines, Contains(AllOf(StartsWith("info taskd serving address="),
                                    HasSubstr(" port="))));
  EXPECT_THAT(lines, Contains("info taskd stopped cleanly"));
}

TEST_F(TaskdLogFormatTest, GrpcErrorsAreJsonToo) {
  // A port taken: gRPC logs why it cannot bind (gpr_log), taskd that it
  // cannot start.
  testing::LoopbackListener held;
  ASSERT_NE(held.port(), 0);
  testing::TaskdProcess::Options options = With({"--log_format=json"});
  options.listen = held.address();
  testing::TaskdProcess taskd(options);
  taskd.Launch();
  EXPECT_EQ(taskd.Wait(absl::Seconds(20)), 1) << taskd.log();
  std::vector<std::string> lines = ParseJsonLog(taskd.log());
  EXPECT_THAT(lines, Contains(StartsWith("error grpc ")));
  EXPECT_THAT(lines, Contains(StartsWith("error taskd cannot start")));
}

TEST_F(TaskdLogFormatTest, TextStaysTheDefault) {
  testing::TaskdProcess taskd(With({}));
  absl::Status started = taskd.Start();
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_EQ(taskd.Stop(SIGTERM), 0);
  EXPECT_THAT(taskd.log(), HasSubstr("Z INFO taskd serving address="));
  EXPECT_THAT(taskd.log(), Not(HasSubstr("{\"time\"")));
}

TEST_F(TaskdLogFormatTest, BadFormatExits2) {
  testing::TaskdProcess taskd(With({"--log_format=xml"}));
  taskd.Launch();
  EXPECT_EQ(taskd.Wait(absl::Seconds(20)), 2) << taskd.log();
  EXPECT_THAT(taskd.log(),
              HasSubstr("taskd: --log_format must be text or json"));
}

}  // namespace
}  // namespace taskd
