#include "server/service_manager.h"

#include <systemd/sd-daemon.h>

#include <cstring>
#include <string>

#include "absl/strings/str_replace.h"
#include "base/log.h"

namespace taskd {

void NotifyServiceManager(absl::string_view state) {
  // 0: keep $NOTIFY_SOCKET, so that every later message finds it too.
  const int sent = sd_notify(0, std::string(state).c_str());
  if (sent < 0) {
    Log(LogLevel::kWarning, "cannot notify the service manager (%s): %s",
        absl::StrReplaceAll(state, {{"\n", " "}}), std::strerror(-sent));
  }
}

}  // namespace taskd
