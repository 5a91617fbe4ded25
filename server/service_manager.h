// Telling the service manager what taskd is doing: systemd's sd_notify
// protocol, for a unit of Type=notify (packaging/taskd.service).
//
//   taskd::NotifyServiceManager("READY=1");     // serving: `systemctl start`
//                                               // returns, dependents start
//   ...
//   taskd::NotifyServiceManager("STOPPING=1");  // shutting down
//
// systemd passes the socket to send to in $NOTIFY_SOCKET. Without it (taskd
// not started by systemd, or by a unit of another Type) nothing is sent and
// nothing fails. A message that cannot be sent is logged as a warning and
// otherwise ignored: systemd then treats taskd as it would a silent one (a
// Type=notify start times out).
//
// Thread-safe. Only service_manager.cc includes systemd's headers.
#ifndef TASKD_SERVER_SERVICE_MANAGER_H_
#define TASKD_SERVER_SERVICE_MANAGER_H_

#include "absl/strings/string_view.h"

namespace taskd {

// Sends `state`, newline-separated VARIABLE=VALUE assignments of sd_notify(3)
// ("READY=1", "STOPPING=1", "STATUS=free text"), as one datagram.
void NotifyServiceManager(absl::string_view state);

}  // namespace taskd

#endif  // TASKD_SERVER_SERVICE_MANAGER_H_
