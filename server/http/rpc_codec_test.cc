#include "server/http/rpc_codec.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "base/error_details.h"
#include "gmock/gmock.h"
#include "server/grpc_status.h"

namespace taskd::http {
namespace {

using ::testing::HasSubstr;

TEST(RpcCodecTest, FindsOnlyTaskServiceMethods) {
  ASSERT_NE(FindTaskMethod("/tasks.v1.TaskService/GetTask"), nullptr);
  EXPECT_TRUE(
      FindTaskMethod("/tasks.v1.TaskService/WatchTasks")->server_streaming());
  EXPECT_EQ(FindTaskMethod("/tasks.v1.TaskService/Nope"), nullptr);
  EXPECT_EQ(FindTaskMethod("/grpc.health.v1.Health/Check"), nullptr);
  EXPECT_EQ(FindTaskMethod("tasks.v1.TaskService/GetTask"), nullptr);
}

TEST(RpcCodecTest, FramesRoundTripAndLiesAreCaught) {
  const std::string frame = Frame(kFrameData, "hello");
  ASSERT_EQ(frame.size(), 10u);
  EXPECT_EQ(frame[4], 5);
  absl::StatusOr<std::string> payload = SingleFramePayload(frame);
  ASSERT_TRUE(payload.ok());
  EXPECT_EQ(*payload, "hello");
  EXPECT_FALSE(SingleFramePayload(frame + "x").ok());
  EXPECT_FALSE(SingleFramePayload(frame.substr(0, 7)).ok());
  EXPECT_FALSE(SingleFramePayload("").ok());
  EXPECT_EQ(SingleFramePayload(Frame(kFrameCompressed, "z")).status().code(),
            absl::StatusCode::kUnimplemented);
  EXPECT_FALSE(SingleFramePayload(Frame(kGrpcWebTrailers, "")).ok());
}

TEST(RpcCodecTest, GrpcWebTextMayComeInPaddedPieces) {
  const std::string a = Frame(kFrameData, "ab");
  const std::string pieces =
      absl::Base64Escape(a.substr(0, 4)) + absl::Base64Escape(a.substr(4));
  absl::StatusOr<std::string> decoded = DecodeGrpcWebText(pieces);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, a);
  EXPECT_FALSE(DecodeGrpcWebText("!!!!").ok());
}

TEST(RpcCodecTest, TrailersPercentEncodeTheMessageAndCarryDetails) {
  absl::Status status = WithReason(absl::NotFoundError("task \"é%\" not found"),
                                   "TASK_NOT_FOUND");
  grpc::Status grpc_status = ToGrpcStatus(status);
  const std::string trailers = GrpcWebTrailers(grpc_status);
  EXPECT_THAT(trailers, HasSubstr("grpc-status:5\r\n"));
  EXPECT_THAT(trailers, HasSubstr("grpc-message:task \"%C3%A9%25\" not found"));
  EXPECT_THAT(trailers, HasSubstr("grpc-status-details-bin:"));
  EXPECT_THAT(GrpcWebTrailers(grpc::Status::OK),
              ::testing::Eq("grpc-status:0\r\n"));

  const std::string json = ConnectErrorJson(grpc_status);
  EXPECT_THAT(json, HasSubstr(R"("code":"not_found")"));
  EXPECT_THAT(json, HasSubstr(R"("type":"google.rpc.ErrorInfo")"));
  EXPECT_THAT(json, HasSubstr(R"("reason":"TASK_NOT_FOUND")"));
  EXPECT_EQ(ConnectEndStreamJson(grpc::Status::OK), "{}");
  EXPECT_THAT(ConnectEndStreamJson(grpc_status),
              HasSubstr(R"({"error":{"code":"not_found")"));
}

TEST(RpcCodecTest, EveryCodeHasAConnectNameAndHttpStatus) {
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::NOT_FOUND), 404);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::UNAUTHENTICATED), 401);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::RESOURCE_EXHAUSTED), 429);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::UNAVAILABLE), 503);
  EXPECT_EQ(HttpStatusOf(grpc::StatusCode::DEADLINE_EXCEEDED), 504);
  EXPECT_EQ(ConnectCode(grpc::StatusCode::CANCELLED), "canceled");
  for (int code = 1; code <= 16; ++code) {
    EXPECT_NE(ConnectCode(static_cast<grpc::StatusCode>(code)), "ok");
    EXPECT_GE(HttpStatusOf(static_cast<grpc::StatusCode>(code)), 400);
  }
}

TEST(RpcCodecTest, JsonConversionIsStrict) {
  const auto* get = FindTaskMethod("/tasks.v1.TaskService/GetTask");
  absl::StatusOr<std::string> binary =
      JsonToBinary(get->input_type(), R"({"id":"t1"})");
  ASSERT_TRUE(binary.ok());
  absl::StatusOr<std::string> json = BinaryToJson(get->input_type(), *binary);
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(*json, R"({"id":"t1"})");
  absl::StatusOr<std::string> unknown =
      JsonToBinary(get->input_type(), R"({"idd":"t1"})");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("tasks.v1.GetTaskRequest"));
}

TEST(RpcCodecTest, TimeoutsInBothSpellings) {
  EXPECT_EQ(*GrpcTimeoutMillis("5S"), 5000);
  EXPECT_EQ(*GrpcTimeoutMillis("100m"), 100);
  EXPECT_EQ(*GrpcTimeoutMillis("2M"), 120000);
  EXPECT_EQ(*GrpcTimeoutMillis("1H"), 3600000);
  EXPECT_EQ(*GrpcTimeoutMillis("3000000n"), 3);
  EXPECT_FALSE(GrpcTimeoutMillis("").value().has_value());
  EXPECT_FALSE(GrpcTimeoutMillis("5").ok());
  EXPECT_FALSE(GrpcTimeoutMillis("5x").ok());
  EXPECT_FALSE(GrpcTimeoutMillis("123456789S").ok());  // 9 digits
  EXPECT_EQ(*ConnectTimeoutMillis("250"), 250);
  EXPECT_FALSE(ConnectTimeoutMillis("-1").ok());
  EXPECT_FALSE(ConnectTimeoutMillis("1.5").ok());
}

TEST(RpcCodecTest, SseEventsSplitDataLines) {
  EXPECT_EQ(SseEvent("change", 7, "a\nb"),
            "event: change\nid: 7\ndata: a\ndata: b\n\n");
  EXPECT_EQ(SseEvent("", std::nullopt, "x"), "data: x\n\n");
  EXPECT_EQ(SseComment("keep-alive"), ": keep-alive\n\n");
}

}  // namespace
}  // namespace taskd::http
