// Who may do what: bearer tokens bound to a tenant and a role.
//
// The token file (--auth_tokens) holds one line per token:
//
//   # sha256(token) in hex                                          tenant role
//   9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//   3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b  issuer
//   60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752  * admin
//
// Only hashes are stored. Callers send `authorization: Bearer TOKEN`; the
// token's hash is compared with every entry in constant time. Roles:
//   viewer    GetTask, ListTasks, WatchTasks, CountTasks, WatchTaskCounts
//   issuer    viewer's, and CreateTask, UpdateTask, DeleteTask, CancelTask
//   executor  viewer's, and AssignTask, StartTask, PauseTask, ResumeTask,
//             CompleteTask, AcquireTask, HeartbeatTask
//   admin     everything, and BackupDatabase (only with tenant `*`: a
//             backup holds every tenant's tasks)
// A tenant of `*` reaches every tenant's tasks; otherwise the caller reads,
// lists, watches and changes only its tenant's tasks.
//
// Without a token file taskd runs open: every caller is an admin of every
// tenant.
//
// Thread-safe; Reload() may run while calls are authorised.
#ifndef TASKD_SERVER_AUTH_H_
#define TASKD_SERVER_AUTH_H_

#include <grpcpp/server_context.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace taskd {

enum class Role { kViewer, kIssuer, kExecutor, kAdmin };

// The calls that need a permission.
enum class Method {
  kGet,
  kList,
  kWatch,
  kCreate,
  kUpdate,
  kDelete,
  kCancel,
  kAssign,
  kStart,
  kPause,
  kResume,
  kComplete,
  kAcquire,
  kHeartbeat,
  kCount,
  kWatchCounts,
  kBackup,
};

absl::string_view MethodName(Method method);
bool RoleAllows(Role role, Method method);

struct Caller {
  // The caller's tenant, lower case; empty means every tenant.
  std::string tenant;
  Role role = Role::kAdmin;

  bool scoped() const { return !tenant.empty(); }
};

class Authorizer {
 public:
  // Open mode: every call is allowed, as an admin of every tenant.
  Authorizer() = default;

  // Reads the token file. InvalidArgument naming the line for a malformed
  // one; NotFound/Unavailable if it cannot be read.
  static absl::StatusOr<std::unique_ptr<Authorizer>> FromFile(
      const std::string& path);

  // Reads the file again; on error keeps the tokens it had.
  absl::Status Reload();

  bool open() const { return path_.empty(); }

  // Who sends the call's token: UNAUTHENTICATED for a missing or unknown
  // token; in open mode, an admin of every tenant.
  absl::StatusOr<Caller> Identify(const grpc::ServerContextBase& context);
  // The same for an `authorization` header value (an edge without gRPC
  // metadata).
  absl::StatusOr<Caller> IdentifyHeader(absl::string_view authorization);
  // OK if `caller`'s role may call `method`, else PERMISSION_DENIED.
  // (An edge authorises a call with Identify, then Permit: TaskService
  // does, telling the call log who called in between.)
  static absl::Status Permit(const Caller& caller, Method method);

  // The hex SHA-256 of a token, as the token file wants it.
  static std::string HashToken(absl::string_view token);

 private:
  struct Entry {
    std::string hash;  // 32 raw bytes
    Caller caller;
  };
  static absl::StatusOr<std::vector<Entry>> Parse(const std::string& path);

  std::string path_;
  absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace taskd

#endif  // TASKD_SERVER_AUTH_H_
