// A minimal structured logger: one line per event on stderr, as text
//
//   2026-11-29T23:52:05.123456Z INFO taskd listening address=127.0.0.1:50051
//
// or, after SetLogFormat(LogFormat::kJson), as one JSON object per line
// (for journald, Loki, Elasticsearch and other collectors):
//
//   {"time":"2026-11-29T23:52:05.123456Z","level":"info","msg":"taskd listening
//   address=127.0.0.1:50051"}
//
// Abseil 20220623 has no logging library yet; this stays small on purpose.
// Thread-safe: each line is written with a single write(2).
#ifndef TASKD_BASE_LOG_H_
#define TASKD_BASE_LOG_H_

#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace taskd {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below this level are dropped. Default kInfo.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
// Parses "debug", "info", "warning", "error".
bool ParseLogLevel(absl::string_view text, LogLevel* level);

enum class LogFormat {
  // `TIME LEVEL MESSAGE`, the message as it is (the default).
  kText,
  // {"time":TIME,"level":"info","msg":MESSAGE}: level in lower case, the
  // message escaped so that every line is one valid JSON object in valid
  // UTF-8, whatever bytes it held: a newline becomes \n, other control
  // characters (C0, DEL, C1) \u00XX, U+2028 and U+2029 \u2028 and \u2029,
  // a byte that is not part of valid UTF-8 U+FFFD.
  kJson,
};

// How lines are written from now on. Default kText.
void SetLogFormat(LogFormat format);
LogFormat CurrentLogFormat();
// Parses "text", "json".
bool ParseLogFormat(absl::string_view text, LogFormat* format);

// The line LogLine writes, with its final newline.
std::string FormatLogLine(LogFormat format, absl::Time time, LogLevel level,
                          absl::string_view message);

// `text` as the contents of a JSON string (without the quotes), as kJson
// above: valid UTF-8 with nothing a line-based reader could split at;
// invalid UTF-8 replaced by U+FFFD, one per maximal invalid subsequence, as
// Unicode recommends.
std::string JsonEscape(absl::string_view text);

void LogLine(LogLevel level, absl::string_view message);

template <typename... Args>
void Log(LogLevel level, const absl::FormatSpec<Args...>& format,
         const Args&... args) {
  if (level < MinLogLevel()) return;
  LogLine(level, absl::StrFormat(format, args...));
}

}  // namespace taskd

#endif  // TASKD_BASE_LOG_H_
