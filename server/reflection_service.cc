#include "server/reflection_service.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <set>

namespace taskd {
namespace {

namespace protobuf = google::protobuf;

// Serves one stream of either protocol version: the two share every message
// shape and differ only in package.
template <typename Request, typename Response>
class ReflectionStream final
    : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit ReflectionStream(const std::vector<std::string>* services)
      : services_(*services) {
    this->StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      this->Finish(grpc::Status::OK);  // the client closed its side
      return;
    }
    response_.Clear();  // each answer stands alone
    Answer();
    this->StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      this->Finish(grpc::Status::CANCELLED);
      return;
    }
    this->StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  void Answer() {
    const protobuf::DescriptorPool* pool =
        protobuf::DescriptorPool::generated_pool();
    response_.set_valid_host(request_.host());
    *response_.mutable_original_request() = request_;
    switch (request_.message_request_case()) {
      case Request::kListServices:
        for (const std::string& name : services_) {
          response_.mutable_list_services_response()->add_service()->set_name(
              name);
        }
        return;
      case Request::kFileByFilename:
        SendFile(pool->FindFileByName(request_.file_by_filename()),
                 "file " + request_.file_by_filename());
        return;
      case Request::kFileContainingSymbol:
        SendFile(
            pool->FindFileContainingSymbol(request_.file_containing_symbol()),
            "symbol " + request_.file_containing_symbol());
        return;
      case Request::kFileContainingExtension: {
        const auto& ext = request_.file_containing_extension();
        const protobuf::Descriptor* type =
            pool->FindMessageTypeByName(ext.containing_type());
        const protobuf::FieldDescriptor* field =
            type == nullptr
                ? nullptr
                : pool->FindExtensionByNumber(type, ext.extension_number());
        SendFile(field == nullptr ? nullptr : field->file(),
                 "extension " + std::to_string(ext.extension_number()) +
                     " of " + ext.containing_type());
        return;
      }
      case Request::kAllExtensionNumbersOfType: {
        const protobuf::Descriptor* type = pool->FindMessageTypeByName(
            request_.all_extension_numbers_of_type());
        if (type == nullptr) {
          Error(grpc::StatusCode::NOT_FOUND,
                "type " + request_.all_extension_numbers_of_type() +
                    " not found");
          return;
        }
        std::vector<const protobuf::FieldDescriptor*> extensions;
        pool->FindAllExtensions(type, &extensions);
        auto* numbers = response_.mutable_all_extension_numbers_response();
        numbers->set_base_type_name(type->full_name());
        for (const auto* extension : extensions) {
          numbers->add_extension_number(extension->number());
        }
        return;
      }
      default:
        Error(grpc::StatusCode::INVALID_ARGUMENT,
              "message_request: none of the known requests is set");
        return;
    }
  }

  // The file first (clients take the first as the answer), then every file
  // it depends on, transitively, each once.
  void SendFile(const protobuf::FileDescriptor* file, const std::string& what) {
    if (file == nullptr) {
      Error(grpc::StatusCode::NOT_FOUND, what + " not found");
      return;
    }
    std::set<std::string> seen;
    std::vector<const protobuf::FileDescriptor*> pending = {file};
    auto* out = response_.mutable_file_descriptor_response();
    while (!pending.empty()) {
      const protobuf::FileDescriptor* next = pending.front();
      pending.erase(pending.begin());
      if (!seen.insert(next->name()).second) continue;
      protobuf::FileDescriptorProto proto;
      next->CopyTo(&proto);
      proto.SerializeToString(out->add_file_descriptor_proto());
      for (int i = 0; i < next->dependency_count(); ++i) {
        pending.push_back(next->dependency(i));
      }
    }
  }

  void Error(grpc::StatusCode code, const std::string& message) {
    response_.mutable_error_response()->set_error_code(code);
    response_.mutable_error_response()->set_error_message(message);
  }

  const std::vector<std::string>& services_;
  Request request_;
  Response response_;
};

}  // namespace

grpc::ServerBidiReactor<grpc::reflection::v1::ServerReflectionRequest,
                        grpc::reflection::v1::ServerReflectionResponse>*
ReflectionV1Service::ServerReflectionInfo(grpc::CallbackServerContext*) {
  return new ReflectionStream<grpc::reflection::v1::ServerReflectionRequest,
                              grpc::reflection::v1::ServerReflectionResponse>(
      &services_);
}

grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                        grpc::reflection::v1alpha::ServerReflectionResponse>*
ReflectionV1AlphaService::ServerReflectionInfo(grpc::CallbackServerContext*) {
  return new ReflectionStream<
      grpc::reflection::v1alpha::ServerReflectionRequest,
      grpc::reflection::v1alpha::ServerReflectionResponse>(&services_);
}

}  // namespace taskd
