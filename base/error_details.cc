#include "base/error_details.h"

#include "absl/strings/cord.h"
#include "google/rpc/error_details.pb.h"

namespace taskd {

absl::Status WithReason(
    absl::Status status, absl::string_view reason,
    std::initializer_list<std::pair<absl::string_view, absl::string_view>>
        metadata) {
  if (status.ok()) return status;
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(kErrorDomain);
  for (const auto& [key, value] : metadata) {
    (*info.mutable_metadata())[std::string(key)] = std::string(value);
  }
  status.SetPayload(kErrorInfoUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status WithFieldViolation(absl::Status status, absl::string_view field,
                                absl::string_view description) {
  if (status.ok()) return status;
  google::rpc::BadRequest bad_request;
  if (absl::optional<absl::Cord> existing = status.GetPayload(kBadRequestUrl)) {
    bad_request.ParseFromString(std::string(*existing));
  }
  auto* violation = bad_request.add_field_violations();
  violation->set_field(std::string(field));
  violation->set_description(std::string(description));
  status.SetPayload(kBadRequestUrl,
                    absl::Cord(bad_request.SerializeAsString()));
  return status;
}

std::string ReasonOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrorInfoUrl);
  if (!payload) return "";
  google::rpc::ErrorInfo info;
  if (!info.ParseFromString(std::string(*payload))) return "";
  return info.reason();
}

std::string ReasonMetadata(const absl::Status& status, absl::string_view key) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrorInfoUrl);
  if (!payload) return "";
  google::rpc::ErrorInfo info;
  if (!info.ParseFromString(std::string(*payload))) return "";
  auto it = info.metadata().find(std::string(key));
  return it == info.metadata().end() ? "" : it->second;
}

}  // namespace taskd
