// A minimal structured logger: one line per event on stderr,
//
//   2026-11-29T23:52:05.123456Z INFO taskd listening address=127.0.0.1:50051
//
// Abseil 20220623 has no logging library yet; this stays small on purpose.
// Thread-safe: each line is written with a single write(2).
#ifndef TASKD_BASE_LOG_H_
#define TASKD_BASE_LOG_H_

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace taskd {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below this level are dropped. Default kInfo.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
// Parses "debug", "info", "warning", "error".
bool ParseLogLevel(absl::string_view text, LogLevel* level);

void LogLine(LogLevel level, absl::string_view message);

template <typename... Args>
void Log(LogLevel level, const absl::FormatSpec<Args...>& format,
         const Args&... args) {
  if (level < MinLogLevel()) return;
  LogLine(level, absl::StrFormat(format, args...));
}

}  // namespace taskd

#endif  // TASKD_BASE_LOG_H_
