// ReflectionService: gRPC server reflection, both grpc.reflection.v1 (what
// current grpcurl and Postman ask for first) and grpc.reflection.v1alpha
// (what older clients speak), over the generated descriptor pool.
//
// Written here rather than taken from gRPC::grpc++_reflection because that
// library, in gRPC 1.51, serves v1alpha only and carries each response's
// files over into the next one on the same stream, so a client that asks
// for several symbols on one stream (`grpcurl describe`) gets the wrong file
// first and fails.
//
// Thread-safe; each stream is served by its own reactor.
#ifndef TASKD_SERVER_REFLECTION_SERVICE_H_
#define TASKD_SERVER_REFLECTION_SERVICE_H_

#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace taskd {

// `services`: the full names that list_services reports.
class ReflectionV1Service final
    : public grpc::reflection::v1::ServerReflection::CallbackService {
 public:
  explicit ReflectionV1Service(std::vector<std::string> services)
      : services_(std::move(services)) {}
  grpc::ServerBidiReactor<grpc::reflection::v1::ServerReflectionRequest,
                          grpc::reflection::v1::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* context) override;

 private:
  const std::vector<std::string> services_;
};

class ReflectionV1AlphaService final
    : public grpc::reflection::v1alpha::ServerReflection::CallbackService {
 public:
  explicit ReflectionV1AlphaService(std::vector<std::string> services)
      : services_(std::move(services)) {}
  grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                          grpc::reflection::v1alpha::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* context) override;

 private:
  const std::vector<std::string> services_;
};

}  // namespace taskd

#endif  // TASKD_SERVER_REFLECTION_SERVICE_H_
