#include "server/http/rpc_codec.h"

#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "tasks/v1/tasks.pb.h"

namespace taskd::http {

namespace {

namespace pb = google::protobuf;

std::unique_ptr<pb::Message> NewMessage(const pb::Descriptor* type) {
  const pb::Message* prototype =
      pb::MessageFactory::generated_factory()->GetPrototype(type);
  return std::unique_ptr<pb::Message>(prototype->New());
}

// Standard base64 without padding, as Connect writes binary values.
std::string Base64Unpadded(absl::string_view bytes) {
  std::string out = absl::Base64Escape(bytes);
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

// grpc-message: bytes outside printable ASCII, and '%', as %XX.
std::string PercentEncode(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(
          &out, "%",
          absl::AsciiStrToUpper(absl::StrCat(absl::Hex(c, absl::kZeroPad2))));
    }
  }
  return out;
}

// A JSON string literal.
std::string Quote(absl::string_view text) {
  pb::Value value;
  value.set_string_value(std::string(text));
  std::string json;
  (void)pb::util::MessageToJsonString(value, &json);
  return json;
}

}  // namespace

const pb::MethodDescriptor* FindTaskMethod(absl::string_view path) {
  static const pb::ServiceDescriptor* service =
      tasks::v1::Task::descriptor()->file()->FindServiceByName("TaskService");
  if (!absl::ConsumePrefix(&path, "/")) return nullptr;
  absl::string_view name = path;
  if (!absl::ConsumePrefix(&name, service->full_name()) ||
      !absl::ConsumePrefix(&name, "/")) {
    return nullptr;
  }
  return service->FindMethodByName(std::string(name));
}

absl::StatusOr<std::string> JsonToBinary(const pb::Descriptor* type,
                                         absl::string_view json) {
  std::unique_ptr<pb::Message> message = NewMessage(type);
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = pb::util::JsonStringToMessage(
      pb::StringPiece(json.data(), json.size()), message.get(), options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request: not valid JSON for ", type->full_name(), ": ",
                     std::string(status.message())));
  }
  return message->SerializeAsString();
}

absl::StatusOr<std::string> BinaryToJson(const pb::Descriptor* type,
                                         absl::string_view binary) {
  std::unique_ptr<pb::Message> message = NewMessage(type);
  if (!message->ParseFromArray(binary.data(),
                               static_cast<int>(binary.size()))) {
    return absl::InternalError(
        absl::StrCat("cannot parse a ", type->full_name()));
  }
  std::string json;
  auto status = pb::util::MessageToJsonString(*message, &json);
  if (!status.ok()) {
    return absl::InternalError(std::string(status.message()));
  }
  return json;
}

std::string Frame(uint8_t flags, absl::string_view payload) {
  std::string out;
  out.reserve(5 + payload.size());
  const uint32_t size = static_cast<uint32_t>(payload.size());
  out.push_back(static_cast<char>(flags));
  out.push_back(static_cast<char>(size >> 24));
  out.push_back(static_cast<char>(size >> 16));
  out.push_back(static_cast<char>(size >> 8));
  out.push_back(static_cast<char>(size));
  out.append(payload.data(), payload.size());
  return out;
}

absl::StatusOr<std::string> SingleFramePayload(absl::string_view body) {
  if (body.size() < 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request body: ", body.size(),
        " bytes is not a length-prefixed message (at least 5 bytes)"));
  }
  const auto* p = reinterpret_cast<const unsigned char*>(body.data());
  const uint8_t flags = p[0];
  const uint32_t size = (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) |
                        (uint32_t{p[3]} << 8) | uint32_t{p[4]};
  if (flags & kFrameCompressed) {
    return absl::UnimplementedError(
        "request body: compressed messages are not supported (send "
        "uncompressed)");
  }
  if (flags != kFrameData) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request body: unexpected frame flags 0x", absl::Hex(flags)));
  }
  if (body.size() - 5 != size) {
    return absl::InvalidArgumentError(
        absl::StrCat("request body: the frame announces ", size, " bytes but ",
                     body.size() - 5,
                     " follow (a unary or server-streaming call takes "
                     "exactly one message)"));
  }
  return std::string(body.substr(5));
}

std::string GrpcWebTrailers(const grpc::Status& status) {
  std::string out = absl::StrCat(
      "grpc-status:", static_cast<int>(status.error_code()), "\r\n");
  if (!status.error_message().empty()) {
    absl::StrAppend(
        &out, "grpc-message:", PercentEncode(status.error_message()), "\r\n");
  }
  if (!status.error_details().empty()) {
    absl::StrAppend(&out, "grpc-status-details-bin:",
                    Base64Unpadded(status.error_details()), "\r\n");
  }
  return out;
}

absl::StatusOr<std::string> DecodeGrpcWebText(absl::string_view body) {
  // Pieces may each carry their own padding: decode up to each '='-run.
  std::string out;
  std::string piece;
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find('=', start);
    if (end == absl::string_view::npos) {
      end = body.size();
    } else {
      while (end < body.size() && body[end] == '=') ++end;
    }
    if (!absl::Base64Unescape(body.substr(start, end - start), &piece)) {
      return absl::InvalidArgumentError(
          "request body: not base64 (application/grpc-web-text)");
    }
    out += piece;
    start = end;
  }
  return out;
}

std::string ConnectCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "ok";
    case grpc::StatusCode::CANCELLED:
      return "canceled";
    case grpc::StatusCode::UNKNOWN:
      return "unknown";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "invalid_argument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "deadline_exceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "not_found";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "already_exists";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "permission_denied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "resource_exhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "failed_precondition";
    case grpc::StatusCode::ABORTED:
      return "aborted";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "out_of_range";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "unimplemented";
    case grpc::StatusCode::INTERNAL:
      return "internal";
    case grpc::StatusCode::UNAVAILABLE:
      return "unavailable";
    case grpc::StatusCode::DATA_LOSS:
      return "data_loss";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "unauthenticated";
    default:
      return "unknown";
  }
}

int HttpStatusOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 499;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    default:
      return 500;
  }
}

std::string ConnectErrorJson(const grpc::Status& status) {
  std::string out =
      absl::StrCat("{\"code\":", Quote(ConnectCode(status.error_code())));
  if (!status.error_message().empty()) {
    absl::StrAppend(&out, ",\"message\":", Quote(status.error_message()));
  }
  google::rpc::Status details;
  if (!status.error_details().empty() &&
      details.ParseFromString(status.error_details()) &&
      details.details_size() > 0) {
    absl::StrAppend(&out, ",\"details\":[");
    for (int i = 0; i < details.details_size(); ++i) {
      const pb::Any& any = details.details(i);
      absl::string_view type = any.type_url();
      type = type.substr(type.rfind('/') + 1);
      absl::StrAppend(&out, i > 0 ? "," : "", "{\"type\":", Quote(type),
                      ",\"value\":", Quote(Base64Unpadded(any.value())));
      // The decoded form too, for people reading it with curl (Connect
      // calls it "debug"; clients decode "value").
      std::unique_ptr<pb::Message> decoded;
      if (type == google::rpc::ErrorInfo::descriptor()->full_name()) {
        decoded = std::make_unique<google::rpc::ErrorInfo>();
      } else if (type == google::rpc::BadRequest::descriptor()->full_name()) {
        decoded = std::make_unique<google::rpc::BadRequest>();
      }
      std::string json;
      if (decoded != nullptr && decoded->ParseFromString(any.value()) &&
          pb::util::MessageToJsonString(*decoded, &json).ok()) {
        absl::StrAppend(&out, ",\"debug\":", json);
      }
      absl::StrAppend(&out, "}");
    }
    absl::StrAppend(&out, "]");
  }
  absl::StrAppend(&out, "}");
  return out;
}

std::string ConnectEndStreamJson(const grpc::Status& status) {
  if (status.ok()) return "{}";
  return absl::StrCat("{\"error\":", ConnectErrorJson(status), "}");
}

absl::StatusOr<std::optional<int64_t>> GrpcTimeoutMillis(
    absl::string_view value) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  const char unit = value.back();
  int64_t amount = 0;
  if (value.size() < 2 || value.size() > 9 ||
      !absl::SimpleAtoi(value.substr(0, value.size() - 1), &amount) ||
      amount < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("grpc-timeout: \"", value,
                     "\" is not a timeout (1 to 8 digits and a unit of H, M, "
                     "S, m, u or n)"));
  }
  switch (unit) {
    case 'H':
      return amount * 3'600'000;
    case 'M':
      return amount * 60'000;
    case 'S':
      return amount * 1000;
    case 'm':
      return amount;
    case 'u':
      return amount / 1000;
    case 'n':
      return amount / 1'000'000;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("grpc-timeout: unknown unit '", std::string(1, unit), "'"));
}

absl::StatusOr<std::optional<int64_t>> ConnectTimeoutMillis(
    absl::string_view value) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  int64_t millis = 0;
  if (value.size() > 10 || !absl::SimpleAtoi(value, &millis) || millis < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("connect-timeout-ms: \"", value,
                     "\" is not a timeout (up to 10 digits of milliseconds)"));
  }
  return millis;
}

std::string SseEvent(absl::string_view event, std::optional<int64_t> id,
                     absl::string_view data) {
  std::string out;
  if (!event.empty()) absl::StrAppend(&out, "event: ", event, "\n");
  if (id.has_value()) absl::StrAppend(&out, "id: ", *id, "\n");
  for (absl::string_view line : absl::StrSplit(data, '\n')) {
    absl::StrAppend(&out, "data: ", absl::StripSuffix(line, "\r"), "\n");
  }
  out += "\n";
  return out;
}

std::string SseComment(absl::string_view text) {
  return absl::StrCat(": ", text, "\n\n");
}

}  // namespace taskd::http
