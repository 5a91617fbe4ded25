// Names for taskd's own threads, as `top -H`, `ps -L`, perf, gdb and
// /proc/PID/task/TID/comm show them:
//
//   thread_ = std::thread([this] {
//     SetThreadName("taskd-timers");
//     Loop();
//   });
//
// A thread without a name shows the name of the thread that started it
// (for taskd's, "taskd"), so that an operator looking at a busy thread
// cannot tell the commit writer from the retention sweeper. Every thread
// taskd starts names itself first thing; gRPC's threads keep the names gRPC
// gives them (`nexting_thread`, `event_engine`, ...), and the threads
// prometheus-cpp starts for --metrics_listen keep theirs.
#ifndef TASKD_BASE_THREAD_NAME_H_
#define TASKD_BASE_THREAD_NAME_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace taskd {

// The longest name Linux keeps, in bytes (16 with the terminating NUL).
inline constexpr size_t kMaxThreadNameLength = 15;

// Names the calling thread; a longer name is cut to kMaxThreadNameLength.
// Best effort: where the system refuses, the thread keeps its name.
void SetThreadName(absl::string_view name);

// The calling thread's name, or "" where the system does not say.
std::string ThreadName();

}  // namespace taskd

#endif  // TASKD_BASE_THREAD_NAME_H_
