#include "server/auth.h"

#include <openssl/crypto.h>

#include <fstream>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/error_details.h"
#include "base/sha256.h"
#include "server/task_validation.h"

namespace taskd {
namespace {

bool ParseRole(absl::string_view text, Role* role) {
  if (text == "viewer") {
    *role = Role::kViewer;
  } else if (text == "issuer") {
    *role = Role::kIssuer;
  } else if (text == "executor") {
    *role = Role::kExecutor;
  } else if (text == "admin") {
    *role = Role::kAdmin;
  } else {
    return false;
  }
  return true;
}

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kIssuer:
      return "issuer";
    case Role::kExecutor:
      return "executor";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

}  // namespace

absl::string_view MethodName(Method method) {
  switch (method) {
    case Method::kGet:
      return "GetTask";
    case Method::kList:
      return "ListTasks";
    case Method::kWatch:
      return "WatchTasks";
    case Method::kCount:
      return "CountTasks";
    case Method::kWatchCounts:
      return "WatchTaskCounts";
    case Method::kBackup:
      return "BackupDatabase";
    case Method::kCreate:
      return "CreateTask";
    case Method::kUpdate:
      return "UpdateTask";
    case Method::kDelete:
      return "DeleteTask";
    case Method::kCancel:
      return "CancelTask";
    case Method::kAssign:
      return "AssignTask";
    case Method::kStart:
      return "StartTask";
    case Method::kPause:
      return "PauseTask";
    case Method::kResume:
      return "ResumeTask";
    case Method::kComplete:
      return "CompleteTask";
    case Method::kAcquire:
      return "AcquireTask";
    case Method::kHeartbeat:
      return "HeartbeatTask";
  }
  return "?";
}

bool RoleAllows(Role role, Method method) {
  switch (method) {
    case Method::kGet:
    case Method::kList:
    case Method::kWatch:
    case Method::kCount:
    case Method::kWatchCounts:
      return true;
    case Method::kCreate:
    case Method::kUpdate:
    case Method::kDelete:
    case Method::kCancel:
      return role == Role::kIssuer || role == Role::kAdmin;
    case Method::kAssign:
    case Method::kStart:
    case Method::kPause:
    case Method::kResume:
    case Method::kComplete:
    case Method::kAcquire:
    case Method::kHeartbeat:
      return role == Role::kExecutor || role == Role::kAdmin;
    case Method::kBackup:
      return role == Role::kAdmin;
  }
  return false;
}

std::string Authorizer::HashToken(absl::string_view token) {
  return absl::BytesToHexString(Sha256::Of(token));
}

absl::StatusOr<std::vector<Authorizer::Entry>> Authorizer::Parse(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("auth_tokens: cannot read ", path));
  }
  std::vector<Entry> entries;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || absl::StartsWith(text, "#")) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth_tokens: ", path, ":", number, ": ", what));
    };
    if (fields.size() != 3) {
      return bad("want three fields: SHA256_HEX TENANT_UUID_OR_* ROLE");
    }
    std::string hex = absl::AsciiStrToLower(fields[0]);
    if (hex.size() != 64 || !std::all_of(hex.begin(), hex.end(), [](char c) {
          return absl::ascii_isxdigit(static_cast<unsigned char>(c));
        })) {
      return bad("the first field must be 64 hex digits (a SHA-256)");
    }
    Entry entry;
    entry.hash = absl::HexStringToBytes(hex);
    if (fields[1] != "*") {
      if (!IsUuid(fields[1])) return bad("the tenant must be a UUID or *");
      entry.caller.tenant = absl::AsciiStrToLower(fields[1]);
    }
    if (!ParseRole(fields[2], &entry.caller.role)) {
      return bad("the role must be viewer, issuer, executor or admin");
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

absl::StatusOr<std::unique_ptr<Authorizer>> Authorizer::FromFile(
    const std::string& path) {
  absl::StatusOr<std::vector<Entry>> entries = Parse(path);
  if (!entries.ok()) return entries.status();
  auto authorizer = std::make_unique<Authorizer>();
  authorizer->path_ = path;
  absl::MutexLock lock(&authorizer->mu_);
  authorizer->entries_ = std::move(*entries);
  return authorizer;
}

absl::Status Authorizer::Reload() {
  if (open()) return absl::OkStatus();
  absl::StatusOr<std::vector<Entry>> entries = Parse(path_);
  if (!entries.ok()) return entries.status();
  absl::MutexLock lock(&mu_);
  entries_ = std::move(*entries);
  return absl::OkStatus();
}

absl::StatusOr<Caller> Authorizer::Identify(
    const grpc::ServerContextBase& context) {
  if (open()) return Caller();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  absl::string_view header;
  if (it != metadata.end()) {
    header = absl::string_view(it->second.data(), it->second.size());
  }
  return IdentifyHeader(header);
}

absl::StatusOr<Caller> Authorizer::IdentifyHeader(
    absl::string_view authorization) {
  if (open()) return Caller();
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ") || token.empty()) {
    return WithReason(
        absl::UnauthenticatedError(
            "missing credentials: send \"authorization: Bearer TOKEN\" (gRPC "
            "metadata or HTTP header; access_token=TOKEN in an event "
            "stream's URL)"),
        "UNAUTHENTICATED");
  }
  std::string hash = Sha256::Of(token);
  std::optional<Caller> match;
  {
    absl::MutexLock lock(&mu_);
    // Every entry is compared, in constant time, so that timing tells
    // nothing about which hashes are close.
    for (const Entry& entry : entries_) {
      if (CRYPTO_memcmp(entry.hash.data(), hash.data(), hash.size()) == 0) {
        match = entry.caller;
      }
    }
  }
  if (!match.has_value()) {
    return WithReason(absl::UnauthenticatedError("unknown token"),
                      "UNAUTHENTICATED");
  }
  return *match;
}

absl::Status Authorizer::Permit(const Caller& caller, Method method) {
  if (RoleAllows(caller.role, method)) return absl::OkStatus();
  return WithReason(
      absl::PermissionDeniedError(absl::StrCat("role ", RoleName(caller.role),
                                               " may not call ",
                                               MethodName(method))),
      "PERMISSION_DENIED",
      {{"role", RoleName(caller.role)}, {"method", MethodName(method)}});
}

}  // namespace taskd
