// PageToken: the opaque continuation token of ListTasks.
//
// A token carries the keyset cursor (the order-key values of the last task
// returned) and is bound to the query it came from and sealed with an
// HMAC-SHA256 under a server key:
//   - a token used with another filter, order or caller scope is rejected;
//   - an edited, truncated or garbage token is rejected;
// both as InvalidArgument naming `page_token`, never a crash or a wrong page.
#ifndef TASKD_QUERY_PAGE_TOKEN_H_
#define TASKD_QUERY_PAGE_TOKEN_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "query/task_fields.h"

namespace taskd {

class PageTokenCodec {
 public:
  // `key` is the MAC key (any length; 32 random bytes recommended). Tokens
  // issued under one key are accepted only under the same key.
  explicit PageTokenCodec(std::string key);

  // `query` identifies the query the token continues: any bytes that differ
  // whenever the filter, order or caller scope differs (e.g. the canonical
  // filter and order text). Returns URL-safe base64 without padding.
  std::string Encode(std::string_view query,
                     const std::vector<FieldValue>& cursor) const;

  // The cursor of `token` if it is intact and was issued for `query`.
  absl::StatusOr<std::vector<FieldValue>> Decode(std::string_view token,
                                                 std::string_view query) const;

 private:
  const std::string key_;
};

}  // namespace taskd

#endif  // TASKD_QUERY_PAGE_TOKEN_H_
