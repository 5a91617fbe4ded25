#include "client/channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/status/status.h"

namespace taskd {

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(
    const ChannelOptions& options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("address: empty; give host:port");
  }
  if (options.tls_cert_pem.empty() != options.tls_key_pem.empty()) {
    return absl::InvalidArgumentError(
        "tls_cert_pem and tls_key_pem go together: a client certificate "
        "needs its private key");
  }
  const bool tls = options.tls || !options.tls_ca_pem.empty() ||
                   !options.tls_cert_pem.empty();
  if (!tls && !options.tls_server_name.empty()) {
    return absl::InvalidArgumentError(
        "tls_server_name is only meaningful with TLS");
  }
  if (!tls) {
    return grpc::CreateChannel(options.address,
                               grpc::InsecureChannelCredentials());
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls_ca_pem;
  ssl.pem_private_key = options.tls_key_pem;
  ssl.pem_cert_chain = options.tls_cert_pem;
  grpc::ChannelArguments arguments;
  if (!options.tls_server_name.empty()) {
    arguments.SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::CreateCustomChannel(options.address, grpc::SslCredentials(ssl),
                                   arguments);
}

}  // namespace taskd
