// The wire formats of taskd's HTTP face, as pure functions: the framing of
// gRPC-Web and of the Connect protocol, proto <-> JSON for TaskService
// messages, status <-> HTTP, and Server-Sent Events. No sockets and no
// calls here (http_server.h does that), so that each format is tested on
// its own.
//
// References for the formats: the gRPC-Web protocol (PROTOCOL-WEB.md in
// grpc/grpc), the Connect protocol (connectrpc.com/docs/protocol) and the
// HTML standard's Server-Sent Events.
#ifndef TASKD_SERVER_HTTP_RPC_CODEC_H_
#define TASKD_SERVER_HTTP_RPC_CODEC_H_

#include <google/protobuf/descriptor.h>
#include <grpcpp/support/status.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace taskd::http {

// The TaskService method a request path names ("/tasks.v1.TaskService/
// GetTask"), or null.
const google::protobuf::MethodDescriptor* FindTaskMethod(
    absl::string_view path);

// A message of `type` from its proto3 JSON form, as binary; InvalidArgument
// saying what is wrong (unknown fields are errors, so a misspelt field is
// not silently dropped).
absl::StatusOr<std::string> JsonToBinary(
    const google::protobuf::Descriptor* type, absl::string_view json);
// The proto3 JSON form of a binary message of `type` (field defaults left
// out, int64 as strings: the canonical form Connect clients expect).
absl::StatusOr<std::string> BinaryToJson(
    const google::protobuf::Descriptor* type, absl::string_view binary);

// ---- Length-prefixed messages (gRPC-Web frames, Connect envelopes) ----
// Both are one flags byte, a 4-byte big-endian length and the payload.
inline constexpr uint8_t kFrameData = 0x00;
inline constexpr uint8_t kFrameCompressed = 0x01;
inline constexpr uint8_t kGrpcWebTrailers = 0x80;
inline constexpr uint8_t kConnectEndStream = 0x02;

std::string Frame(uint8_t flags, absl::string_view payload);
// The payload of the one uncompressed data frame that `body` must be (a
// unary or server-streaming request); InvalidArgument otherwise.
absl::StatusOr<std::string> SingleFramePayload(absl::string_view body);

// ---- gRPC-Web ----
// The trailer frame's payload: grpc-status, grpc-message (percent-encoded)
// and grpc-status-details-bin, as HTTP/1 header lines.
std::string GrpcWebTrailers(const grpc::Status& status);
// grpc-web-text bodies are base64; a request body may be in several padded
// pieces. InvalidArgument if it is not base64.
absl::StatusOr<std::string> DecodeGrpcWebText(absl::string_view body);

// ---- Connect ----
// "not_found", ... (the Connect spelling of a code).
std::string ConnectCode(grpc::StatusCode code);
// The HTTP status of a unary Connect error with `code`.
int HttpStatusOf(grpc::StatusCode code);
// {"code":..., "message":..., "details":[{"type","value","debug"}]}: the
// body of a unary error, and the "error" of a stream's end.
std::string ConnectErrorJson(const grpc::Status& status);
// The JSON of a Connect stream's end-stream message: {} or {"error":...}.
std::string ConnectEndStreamJson(const grpc::Status& status);

// A request deadline from `grpc-timeout` ("100m", "5S") or
// `connect-timeout-ms` ("2500"); nullopt if absent, InvalidArgument if
// malformed.
absl::StatusOr<std::optional<int64_t>> GrpcTimeoutMillis(
    absl::string_view value);
absl::StatusOr<std::optional<int64_t>> ConnectTimeoutMillis(
    absl::string_view value);

// ---- Server-Sent Events ----
// One event: `event:` (if not empty), `id:` (if set), one `data:` line per
// line of `data`, and the blank line that ends it.
std::string SseEvent(absl::string_view event, std::optional<int64_t> id,
                     absl::string_view data);
// A comment line (keep-alive): ignored by EventSource, keeps proxies from
// closing an idle stream.
std::string SseComment(absl::string_view text);

}  // namespace taskd::http

#endif  // TASKD_SERVER_HTTP_RPC_CODEC_H_
