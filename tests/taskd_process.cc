#include "tests/taskd_process.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace taskd::testing {

TaskdProcess::TaskdProcess(Options options) : options_(std::move(options)) {}

TaskdProcess::~TaskdProcess() = default;

void TaskdProcess::Launch() {
  std::vector<std::string> argv = {
      options_.binary.empty() ? TaskdPath() : options_.binary,
      "--listen=" + options_.listen};
  if (!options_.db_path.empty()) argv.push_back("--db=" + options_.db_path);
  // Tests run side by side: the HTTP listener's fixed default port would
  // collide. A flag of the test's own (later on the line) wins.
  argv.push_back("--http_listen=127.0.0.1:0");
  argv.insert(argv.end(), options_.flags.begin(), options_.flags.end());
  process_.reset();  // kills one still running
  serving_line_.clear();
  port_ = 0;
  process_ = std::make_unique<Subprocess>(argv);
}

absl::Status TaskdProcess::Start() {
  Launch();
  serving_line_ =
      process_->WaitForLine("taskd serving", options_.start_timeout);
  if (serving_line_.empty()) {
    // Either it ended (its stderr closed; it is about to be reaped) or it
    // is still starting.
    int exit = process_->Wait(absl::Seconds(1));
    if (exit >= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("taskd exited with ", exit, " before serving:\n",
                       process_->output()));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("taskd did not serve within ",
                     absl::FormatDuration(options_.start_timeout), ":\n",
                     process_->output()));
  }
  if (!absl::SimpleAtoi(serving_field("port"), &port_) || port_ <= 0) {
    port_ = 0;
    return absl::InternalError(
        absl::StrCat("no port in taskd's serving line: ", serving_line_));
  }
  return absl::OkStatus();
}

int TaskdProcess::Stop(int signal, absl::Duration timeout) {
  if (process_ == nullptr) return -1;
  process_->Signal(signal);
  return process_->Wait(timeout);
}

void TaskdProcess::Signal(int signal) {
  if (process_ != nullptr) process_->Signal(signal);
}

int TaskdProcess::Wait(absl::Duration timeout) {
  return process_ == nullptr ? -1 : process_->Wait(timeout);
}

std::string TaskdProcess::address() const {
  absl::string_view host = options_.listen;
  size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos) host = host.substr(0, colon);
  if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
  return absl::StrCat(host, ":", port_);
}

std::shared_ptr<grpc::Channel> TaskdProcess::NewChannel() const {
  // A connection of its own: gRPC's global pool would otherwise hand a new
  // channel the connection of an older one to the same address, which may
  // still look ready after the taskd behind it stopped (a test that starts
  // another taskd on the port then sees UNAVAILABLE: Broken pipe).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address(),
                                   grpc::InsecureChannelCredentials(), args);
}

std::string TaskdProcess::serving_field(absl::string_view key) const {
  const std::string prefix = absl::StrCat(key, "=");
  for (absl::string_view field : absl::StrSplit(serving_line_, ' ')) {
    if (absl::ConsumePrefix(&field, prefix)) return std::string(field);
  }
  return "";
}

int64_t TaskdProcess::start_revision() const {
  int64_t revision = -1;
  if (!absl::SimpleAtoi(serving_field("revision"), &revision)) return -1;
  return revision;
}

pid_t TaskdProcess::pid() const {
  return process_ == nullptr ? -1 : process_->pid();
}

const std::string& TaskdProcess::log() {
  static const std::string kNone;
  if (process_ == nullptr) return kNone;
  process_->ReadAvailable();
  return process_->output();
}

}  // namespace taskd::testing
