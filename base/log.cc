#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace taskd {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> log_format{static_cast<int>(LogFormat::kText)};

constexpr char kTimeFormat[] = "%Y-%m-%dT%H:%M:%E6SZ";

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

const char* JsonLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

// The length of the well-formed UTF-8 sequence at the start of `text`, or 0
// if there is none; then *invalid is how many bytes to replace with one
// U+FFFD (the maximal subpart, Unicode 15 section 3.9, table 3-7).
size_t Utf8SequenceLength(absl::string_view text, size_t* invalid) {
  const auto byte = [&](size_t i) {
    return static_cast<unsigned char>(text[i]);
  };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  size_t length;
  unsigned char low = 0x80, high = 0xBF;  // the second byte's range
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // no overlong forms
    if (lead == 0xED) high = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // no overlong forms
    if (lead == 0xF4) high = 0x8F;  // nothing above U+10FFFF
  } else {
    *invalid = 1;  // a continuation byte, C0, C1 or F5..FF
    return 0;
  }
  for (size_t i = 1; i < length; ++i) {
    const bool ok = i < text.size() && byte(i) >= (i == 1 ? low : 0x80) &&
                    byte(i) <= (i == 1 ? high : 0xBF);
    if (!ok) {
      *invalid = i;
      return 0;
    }
  }
  return length;
}

// Appends \uXXXX.
void AppendUnicodeEscape(unsigned int code_point, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  *out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) {
    *out += kHex[(code_point >> shift) & 0xF];
  }
}

}  // namespace

void SetMinLogLevel(LogLevel level) { min_level = static_cast<int>(level); }

LogLevel MinLogLevel() { return static_cast<LogLevel>(min_level.load()); }

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  if (text == "debug") {
    *level = LogLevel::kDebug;
  } else if (text == "info") {
    *level = LogLevel::kInfo;
  } else if (text == "warning") {
    *level = LogLevel::kWarning;
  } else if (text == "error") {
    *level = LogLevel::kError;
  } else {
    return false;
  }
  return true;
}

void SetLogFormat(LogFormat format) { log_format = static_cast<int>(format); }

LogFormat CurrentLogFormat() {
  return static_cast<LogFormat>(log_format.load());
}

bool ParseLogFormat(absl::string_view text, LogFormat* format) {
  if (text == "text") {
    *format = LogFormat::kText;
  } else if (text == "json") {
    *format = LogFormat::kJson;
  } else {
    return false;
  }
  return true;
}

std::string JsonEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  while (!text.empty()) {
    const unsigned char c = static_cast<unsigned char>(text[0]);
    size_t invalid = 0;
    const size_t length = Utf8SequenceLength(text, &invalid);
    if (length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      text.remove_prefix(invalid);
      continue;
    }
    const unsigned char c1 =
        length > 1 ? static_cast<unsigned char>(text[1]) : 0;
    const unsigned char c2 =
        length > 2 ? static_cast<unsigned char>(text[2]) : 0;
    if (length == 2 && c == 0xC2 && c1 <= 0x9F) {
      AppendUnicodeEscape(c1, &out);  // C1 controls, NEL (U+0085) among them
    } else if (length == 3 && c == 0xE2 && c1 == 0x80 &&
               (c2 == 0xA8 || c2 == 0xA9)) {
      // Line and paragraph separators: valid in JSON, but readers that
      // split lines the Unicode way (Python's splitlines) would break the
      // line there.
      AppendUnicodeEscape(c2 == 0xA8 ? 0x2028 : 0x2029, &out);
    } else if (length > 1) {
      out.append(text.data(), length);
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      AppendUnicodeEscape(c, &out);
    } else {
      out += static_cast<char>(c);
    }
    text.remove_prefix(length);
  }
  return out;
}

std::string FormatLogLine(LogFormat format, absl::Time time, LogLevel level,
                          absl::string_view message) {
  const std::string when =
      absl::FormatTime(kTimeFormat, time, absl::UTCTimeZone());
  if (format == LogFormat::kJson) {
    return absl::StrCat("{\"time\":\"", when, "\",\"level\":\"",
                        JsonLevelName(level), "\",\"msg\":\"",
                        JsonEscape(message), "\"}\n");
  }
  return absl::StrCat(when, " ", LevelName(level), " ", message, "\n");
}

void LogLine(LogLevel level, absl::string_view message) {
  if (level < MinLogLevel()) return;
  std::string line =
      FormatLogLine(CurrentLogFormat(), absl::Now(), level, message);
  // One write per line, so concurrent lines never interleave.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace taskd
