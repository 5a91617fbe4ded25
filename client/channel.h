// OpenChannel: how a client program reaches taskd, in plaintext or TLS.
//
//   taskd::ChannelOptions options;
//   options.address = "tasks.example.com:50051";
//   options.tls = true;
//   options.tls_ca_pem = ca_bundle;            // else the system's roots
//   absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
//       taskd::OpenChannel(options);
//
// The bearer token is not part of the channel: gRPC refuses call
// credentials on a plaintext channel, and taskd accepts tokens over
// loopback plaintext. Give it to TaskClient::Options and TaskWatch::Options.
#ifndef TASKD_CLIENT_CHANNEL_H_
#define TASKD_CLIENT_CHANNEL_H_

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace taskd {

struct ChannelOptions {
  // host:port of taskd. Default: taskd's default address.
  std::string address = "127.0.0.1:50051";

  // Speak TLS. Implied by any of the PEM fields below.
  bool tls = false;
  // PEM CA bundle to verify the server's certificate with; empty: the
  // system's trusted roots.
  std::string tls_ca_pem;
  // PEM client certificate chain and its private key, for servers that
  // require client certificates (mutual TLS). Both or neither.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // Check the server's certificate against this name instead of the host
  // in `address` (for a server reached by IP whose certificate names a DNS
  // name). Empty: the host in `address`.
  std::string tls_server_name;
};

// A channel for `options`; it connects lazily, so an unreachable server
// shows up as UNAVAILABLE on the first call. InvalidArgument when the
// options contradict each other (a certificate without its key, a server
// name without TLS).
absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(
    const ChannelOptions& options);

}  // namespace taskd

#endif  // TASKD_CLIENT_CHANNEL_H_
