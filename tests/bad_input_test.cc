// Bad input through a real server: bytes that are not the message they claim
// to be, strings that are not UTF-8, enum numbers the proto does not know,
// timestamps outside what a Timestamp can hold, page sizes and intervals at
// the ends of their types, messages over the size limit. Each gets a clear
// status, nothing is stored, and the server keeps serving.
//
// Some requests are written byte by byte (protobuf wire format) and sent
// through a generic stub, so that nothing on the client side can clean
// them up first.
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/error_details.h"
#include "client/task_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/task_server.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using tasks::v1::ListTasksRequest;
using tasks::v1::WatchTasksRequest;
using tasks::v1::WatchTasksResponse;
using ::testing::HasSubstr;

// --- The protobuf wire format, by hand.
std::string Varint(uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
  return out;
}
// Field `number` holding a varint (wire type 0).
std::string VarintField(int number, uint64_t value) {
  return Varint(static_cast<uint64_t>(number) << 3) + Varint(value);
}
// Field `number` holding bytes: a string, or an embedded message (type 2).
std::string BytesField(int number, const std::string& bytes) {
  return Varint((static_cast<uint64_t>(number) << 3) | 2) +
         Varint(bytes.size()) + bytes;
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TaskServerOptions options;
    options.store.path = dir_.File("taskd.db");
    options.store.synchronous_full = false;
    options.service.max_page_size = 1000;
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
  }
  void TearDown() override { taskd_.Stop(absl::Seconds(2)); }

  // The same port and database, with what taskd_.options() says now.
  void Restart() {
    absl::Status restarted = taskd_.Restart(absl::Seconds(2));
    ASSERT_TRUE(restarted.ok()) << restarted;
  }

  // Sends `body` as the request of the unary `method` ("CreateTask").
  grpc::Status RawCall(const std::string& method, const std::string& body) {
    grpc::GenericStub stub(taskd_.channel);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::Slice slice(body);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::Status status;
    absl::Notification done;
    stub.UnaryCall(&context, "/tasks.v1.TaskService/" + method, {}, &request,
                   &response, [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();
    return status;
  }

  // Opens a watch and returns how it ended, or OK if it is still open after
  // its first response (then *first holds it).
  grpc::Status Watch(const WatchTasksRequest& request,
                     WatchTasksResponse* first = nullptr) {
    auto stub = tasks::v1::TaskService::NewStub(taskd_.channel);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    auto reader = stub->WatchTasks(&context, request);
    WatchTasksResponse response;
    if (reader->Read(&response)) {
      if (first != nullptr) *first = response;
      context.TryCancel();
      reader->Finish();
      return grpc::Status::OK;
    }
    return reader->Finish();
  }

  // The server still works: a create succeeds and takes the next revision.
  void ExpectStillServing() {
    int64_t before = taskd_.server->store()->CurrentRevision();
    Task task;
    task.set_type("backup");
    absl::StatusOr<Task> created = taskd_.client->Create(task);
    ASSERT_TRUE(created.ok()) << created.status();
    EXPECT_EQ(created->revision(), before + 1);
  }

  Task MustCreate(const std::string& id) {
    Task task;
    task.set_id(id);
    task.set_type("backup");
    absl::StatusOr<Task> created = taskd_.client->Create(task);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : Task();
  }

  testing::TempDir dir_;
  testing::InProcessTaskd taskd_;
};

// What taskd answers a request it cannot deserialize: INVALID_ARGUMENT
// naming the request type. (gRPC 1.51's callback API itself answers a bare
// UNIMPLEMENTED, see server_callback_handlers.h, "if deserialization or
// reactor creator failed"; taskd's call interceptor rewrites it, and
// WatchTasks decodes its request itself.) The service never sees the
// request.
constexpr grpc::StatusCode kUndecodable = grpc::StatusCode::INVALID_ARGUMENT;

// proto3 `string` fields must hold UTF-8; the generated parser refuses
// anything else, so the request never reaches the service. Nothing is
// stored, and the connection and server carry on.
TEST_F(BadInputTest, InvalidUtf8IsRefusedAndTheServerStaysUp) {
  struct Case {
    const char* what;
    const char* method;
    std::string body;
  } cases[] = {
      {"task.type: bytes 0xff 0xfe", "CreateTask",
       BytesField(1, BytesField(3, "\xff\xfe"))},
      {"task.id: an overlong encoding of '/'", "CreateTask",
       BytesField(1, BytesField(1, "a\xc0\xaf") + BytesField(3, "backup"))},
      {"request_id: a lone continuation byte", "CreateTask",
       BytesField(1, BytesField(3, "backup")) + BytesField(2, "r\x80")},
      {"id: an encoded UTF-16 surrogate", "GetTask",
       BytesField(1, "\xed\xa0\x80")},
      {"filter: a truncated sequence", "ListTasks",
       BytesField(3, "type = \"\xe2\x82\"")},
      {"update_mask path", "UpdateTask",
       BytesField(1, BytesField(1, "x") + BytesField(6, "high")) +
           BytesField(2, BytesField(1, "prio\xffrity"))},
      {"executor_id", "AssignTask",
       BytesField(1, "x") + BytesField(2, "agent\xfe")},
  };
  const int64_t before = taskd_.server->store()->CurrentRevision();
  for (const Case& c : cases) {
    grpc::Status status = RawCall(c.method, c.body);
    EXPECT_EQ(status.error_code(), kUndecodable)
        << c.what << ": " << status.error_message();
    EXPECT_THAT(status.error_message(),
                HasSubstr(absl::StrCat("not a valid tasks.v1.", c.method)))
        << c.what;
    EXPECT_EQ(ReasonOf(FromGrpcStatus(status)), "MALFORMED_REQUEST") << c.what;
  }
  // The same bytes as a watch filter (the client's serializer complains in
  // the log but sends them).
  WatchTasksRequest watch;
  watch.set_filter("type = \"\xff\"");
  grpc::Status watch_status = Watch(watch);
  EXPECT_EQ(watch_status.error_code(), kUndecodable);
  EXPECT_THAT(watch_status.error_message(),
              HasSubstr("not a valid tasks.v1.WatchTasksRequest"));

  EXPECT_EQ(taskd_.server->store()->CurrentRevision(), before);
  ExpectStillServing();
  // Valid multi-byte UTF-8 is text like any other.
  Task task;
  task.set_type("sauvegarde-\xc3\xa9t\xc3\xa9-\xe2\x9c\x93");
  absl::StatusOr<Task> created = taskd_.client->Create(task);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(taskd_.client->Get(created->id())->type(), task.type());
}

// Bytes that are not a protobuf message at all, or one cut short: refused
// as above. An empty message is a valid (empty) request, checked as such;
// unknown fields are skipped, as protobuf does.
TEST_F(BadInputTest, MalformedMessages) {
  const int64_t before = taskd_.server->store()->CurrentRevision();
  EXPECT_EQ(RawCall("CreateTask", "\xff\xff\xff\xff\xff").error_code(),
            kUndecodable);
  // A length that runs past the end.
  EXPECT_EQ(RawCall("CreateTask", Varint((1 << 3) | 2) + Varint(100) + "abc")
                .error_code(),
            kUndecodable);
  // A varint that never ends.
  EXPECT_EQ(RawCall("GetTask", std::string(12, '\x80')).error_code(),
            kUndecodable);
  // Wire type 7 does not exist.
  EXPECT_EQ(RawCall("GetTask", Varint((1 << 3) | 7) + "x").error_code(),
            kUndecodable);
  EXPECT_EQ(taskd_.server->store()->CurrentRevision(), before);

  grpc::Status empty = RawCall("CreateTask", "");
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(empty.error_message(), HasSubstr("task"));
  EXPECT_EQ(RawCall("CreateTask", BytesField(1, BytesField(3, "backup")) +
                                      VarintField(99, 7) +
                                      BytesField(1000, "future field"))
                .error_code(),
            grpc::StatusCode::OK);
  ExpectStillServing();
}

// Enum fields are open in proto3: a number the proto does not name arrives
// as that number, and the service must refuse it rather than store it.
TEST_F(BadInputTest, UnknownEnumNumbersAreInvalidArgument) {
  MustCreate("t1");
  ASSERT_TRUE(taskd_.client->Assign("t1", "agent").ok());
  const int64_t before = taskd_.server->store()->CurrentRevision();

  absl::Status status =
      taskd_.client->Complete("t1", static_cast<Task::ResultCode>(99), "")
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr("result_code"));
  // A negative number, and one past int32 (the parser keeps its low bits).
  for (uint64_t number : {~uint64_t{0}, (uint64_t{1} << 40) | 77}) {
    grpc::Status raw =
        RawCall("CompleteTask", BytesField(1, "t1") + VarintField(2, number));
    EXPECT_EQ(raw.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << number << ": " << raw.error_message();
    EXPECT_THAT(raw.error_message(), HasSubstr("result_code"));
  }
  EXPECT_EQ(taskd_.client->Get("t1")->state(), Task::assigned);

  Task task;
  task.set_type("backup");
  task.set_state(static_cast<Task::State>(99));
  status = taskd_.client->Create(task).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("task.state"));
  task.set_state(Task::STATE_UNSPECIFIED);
  task.set_result_code(static_cast<Task::ResultCode>(-5));
  status = taskd_.client->Create(task).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("task.result_code"));

  Task patch;
  patch.set_id("t1");
  patch.set_state(static_cast<Task::State>(42));
  status = taskd_.client->Update(patch, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("task.state"));

  EXPECT_EQ(taskd_.server->store()->CurrentRevision(), before);
  ExpectStillServing();
}

// A google.protobuf.Timestamp holds 0001-01-01 to 9999-12-31; a filter
// naming a time outside that range (or not a time) is INVALID_ARGUMENT, in
// ListTasks and in WatchTasks alike. The ends of the range themselves work.
TEST_F(BadInputTest, OutOfRangeTimestampsInFiltersAreInvalidArgument) {
  MustCreate("t1");
  const char* bad[] = {
      "enqueuedAt >= \"10000-01-01T00:00:00Z\"",
      "completedAt < \"0000-12-31T23:59:59Z\"",
      "updatedAt > \"-0001-01-01T00:00:00Z\"",
      "startedAt <= \"99999999999-01-01T00:00:00Z\"",
      "enqueuedAt > \"2026-02-30T00:00:00Z\"",
      "enqueuedAt > \"2026-01-01T25:00:00Z\"",
      "enqueuedAt > \"1e400\"",
      "enqueuedAt > 1700000000",
      "revision > 99999999999999999999",
      "revision < -99999999999999999999",
  };
  for (const char* filter : bad) {
    ListTasksRequest request;
    request.set_filter(filter);
    absl::Status status = taskd_.client->List(request).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << filter << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr("filter")) << filter;

    WatchTasksRequest watch;
    watch.set_filter(filter);
    grpc::Status watched = Watch(watch);
    EXPECT_EQ(watched.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << filter << ": " << watched.error_message();
  }
  for (const char* filter : {"enqueuedAt >= \"0001-01-01T00:00:00Z\"",
                             "enqueuedAt <= \"9999-12-31T23:59:59.999999999Z\"",
                             "revision < 9223372036854775807"}) {
    ListTasksRequest request;
    request.set_filter(filter);
    absl::StatusOr<tasks::v1::ListTasksResponse> page =
        taskd_.client->List(request);
    ASSERT_TRUE(page.ok()) << filter << ": " << page.status();
    EXPECT_EQ(page->tasks_size(), 1) << filter;
  }
}

// Page sizes at the ends of int32: the largest is lowered to the cap, and
// paging still reaches every task; the smallest is refused.
TEST_F(BadInputTest, HugePageSizesAreClamped) {
  for (int i = 0; i < 5; ++i) MustCreate(absl::StrCat("t", i));
  ListTasksRequest request;
  request.set_page_size(std::numeric_limits<int32_t>::max());
  absl::StatusOr<tasks::v1::ListTasksResponse> page =
      taskd_.client->List(request);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->tasks_size(), 5);
  EXPECT_TRUE(page->next_page_token().empty());

  taskd_.options().server.service.max_page_size = 2;
  Restart();
  int listed = 0, pages = 0;
  while (true) {
    page = taskd_.client->List(request);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->tasks_size(), 2);
    listed += page->tasks_size();
    ++pages;
    if (page->next_page_token().empty()) break;
    request.set_page_token(page->next_page_token());
  }
  EXPECT_EQ(listed, 5);
  EXPECT_EQ(pages, 3);

  request.Clear();
  request.set_page_size(std::numeric_limits<int32_t>::min());
  absl::Status status = taskd_.client->List(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("page_size"));
}

// Watch parameters at the ends of their types: an interval beyond the
// Duration range is clamped to the maximum, a negative one refused; a
// start revision far in the future is refused as out of range.
TEST_F(BadInputTest, ExtremeWatchRequests) {
  MustCreate("t1");
  WatchTasksRequest request;
  request.mutable_progress_interval()->set_seconds(
      std::numeric_limits<int64_t>::max());
  request.mutable_progress_interval()->set_nanos(999'999'999);
  WatchTasksResponse first;
  EXPECT_TRUE(Watch(request, &first).ok());
  EXPECT_TRUE(first.progress());
  EXPECT_EQ(first.revision(), 1);

  request.mutable_progress_interval()->set_seconds(
      std::numeric_limits<int64_t>::min());
  request.mutable_progress_interval()->set_nanos(0);
  grpc::Status status = Watch(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("progress_interval"));

  // A start far in the future names a revision no taskd handed out:
  // OUT_OF_RANGE, so that the client lists again.
  request.Clear();
  request.set_start_revision(std::numeric_limits<int64_t>::max());
  first.Clear();
  grpc::Status future = Watch(request, &first);
  EXPECT_EQ(future.error_code(), grpc::StatusCode::OUT_OF_RANGE)
      << future.error_message();
  EXPECT_EQ(first.events_size(), 0);
  request.set_start_revision(std::numeric_limits<int64_t>::min());
  EXPECT_EQ(Watch(request).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ExpectStillServing();
}

// Over the receive limit (1 MiB by default): RESOURCE_EXHAUSTED from gRPC,
// for unary calls and for a watch, and the next call works. (auth_test
// checks the same with tokens.)
TEST_F(BadInputTest, OversizedRequestsAreResourceExhausted) {
  Task task;
  task.set_type(std::string(2 << 20, 'x'));
  EXPECT_EQ(taskd_.client->Create(task).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(
      RawCall("GetTask", BytesField(1, std::string(3 << 20, 'y'))).error_code(),
      grpc::StatusCode::RESOURCE_EXHAUSTED);
  WatchTasksRequest watch;
  watch.set_filter(std::string(2 << 20, ' '));
  EXPECT_EQ(Watch(watch).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Under the limit but over the field limits: the service names the field.
  task.set_type(std::string(100'000, 'x'));
  absl::Status status = taskd_.client->Create(task).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("task.type"));
  ListTasksRequest list;
  list.set_filter(std::string(500'000, '('));
  status = taskd_.client->List(list).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("filter"));
  ExpectStillServing();
}

}  // namespace
}  // namespace taskd
