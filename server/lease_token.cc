#include "server/lease_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/error_details.h"
#include "server/task_lifecycle.h"

namespace taskd {
namespace {

using tasks::v1::Task;

constexpr size_t kMacBytes = 16;

std::string Hmac(absl::string_view key, absl::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  std::string k(key);  // data() of a std::string is never null
  if (HMAC(EVP_sha256(), k.data(), static_cast<int>(k.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(),
           mac, &length) == nullptr ||
      length < kMacBytes) {
    return std::string();  // OpenSSL failed (out of memory): no token checks
  }
  return std::string(reinterpret_cast<const char*>(mac), kMacBytes);
}

absl::Status InvalidToken(absl::string_view field, const Task& task,
                          absl::string_view what) {
  std::string message = absl::StrCat(field, ": ", what);
  return WithFieldViolation(
      WithReason(absl::InvalidArgumentError(message), "INVALID_LEASE_TOKEN",
                 {{"field", std::string(field)}, {"task_id", task.id()}}),
      field, what);
}

// What the task is now, for a LEASE_LOST message.
std::string Describe(const Task& task) {
  std::string now = Task::State_Name(task.state());
  if (task.state() == Task::completed) {
    absl::StrAppend(&now, " (", Task::ResultCode_Name(task.result_code()), ")");
  }
  if (task.timeout() != tasks::v1::TIMEOUT_UNSPECIFIED) {
    absl::StrAppend(&now, " after its ",
                    tasks::v1::TaskTimeout_Name(task.timeout()));
  }
  if (Leased(task)) {
    absl::StrAppend(&now, " under assignment ", task.assign_count(), " to \"",
                    task.executor_id(), "\"");
  }
  return now;
}

}  // namespace

LeaseTokens::LeaseTokens(absl::string_view secret)
    : key_(Hmac(secret, "taskd lease token key v1")) {}

std::string LeaseTokens::Mac(const Task& task, int64_t assignment) const {
  return Hmac(key_, absl::StrCat(task.uuid(), "\n", assignment));
}

std::string LeaseTokens::Issue(const Task& task) const {
  return absl::StrCat(
      task.assign_count(), ".",
      absl::WebSafeBase64Escape(Mac(task, task.assign_count())));
}

absl::Status LeaseTokens::Check(const Task& task, absl::string_view token,
                                absl::string_view field) const {
  if (token.empty()) {
    if (!Leased(task) || task.assign_count() == 0) return absl::OkStatus();
    return InvalidToken(field, task,
                        absl::StrCat("is required: task \"", task.id(),
                                     "\" is leased; pass the lease token "
                                     "AcquireTask or AssignTask returned"));
  }
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(token, absl::MaxSplits('.', 1));
  int64_t assignment = 0;
  std::string mac;
  if (token.size() > 64 || !absl::SimpleAtoi(parts.first, &assignment) ||
      assignment < 1 || !absl::WebSafeBase64Unescape(parts.second, &mac) ||
      mac.size() != kMacBytes ||
      CRYPTO_memcmp(mac.data(), Mac(task, assignment).data(), kMacBytes) != 0) {
    return InvalidToken(
        field, task,
        absl::StrCat("is not a lease token of task \"", task.id(), "\""));
  }
  if (Leased(task) && assignment == task.assign_count()) {
    return absl::OkStatus();
  }
  return WithReason(absl::FailedPreconditionError(absl::StrCat(
                        "lease lost: the token is assignment ", assignment,
                        "'s of task \"", task.id(), "\", which is now ",
                        Describe(task), "; stop working on it")),
                    "LEASE_LOST",
                    {{"task_id", task.id()},
                     {"state", Task::State_Name(task.state())},
                     {"assign_count", absl::StrCat(task.assign_count())}});
}

}  // namespace taskd
