// TLS and mutual TLS handshakes with certificates made by the test.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/strings/str_cat.h"
#include "client/channel.h"
#include "client/task_client.h"
#include "gtest/gtest.h"
#include "tests/test_certificates.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using testing::ReadFile;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::TestCertificates> pki =
        testing::TestCertificates::Make(dir_.path());
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
  }

  void Start(bool require_client_certificate) {
    grpc::SslServerCredentialsOptions ssl(
        require_client_certificate
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ssl.pem_key_cert_pairs.push_back(
        {ReadFile(pki_.server_key), ReadFile(pki_.server_cert)});
    if (require_client_certificate) {
      ssl.pem_root_certs = ReadFile(pki_.ca_cert);
    }
    testing::InProcessTaskd::Options options;
    options.server.store.path = dir_.File("taskd.db");
    options.server.credentials = grpc::SslServerCredentials(ssl);
    // The name the server certificate is issued for.
    options.host = "localhost";
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
  }

  // Creates a task over a TLS channel (OpenChannel, as taskctl makes it)
  // trusting the CA in `ca_path`, presenting the client certificate if
  // `with_client_certificate`.
  absl::Status Call(const std::string& ca_path, bool with_client_certificate) {
    ChannelOptions channel;
    channel.address = taskd_.address();
    channel.tls_ca_pem = ReadFile(ca_path);
    if (with_client_certificate) {
      channel.tls_cert_pem = ReadFile(pki_.client_cert);
      channel.tls_key_pem = ReadFile(pki_.client_key);
    }
    absl::StatusOr<std::shared_ptr<grpc::Channel>> opened =
        OpenChannel(channel);
    if (!opened.ok()) return opened.status();
    TaskClient::Options options;
    options.deadline = absl::Seconds(5);
    TaskClient client(*opened, options);
    Task task;
    task.set_type("backup");
    return client.Create(task).status();
  }

  void TearDown() override { taskd_.Stop(absl::Seconds(1)); }

  testing::TempDir dir_;
  testing::TestCertificates pki_;
  testing::InProcessTaskd taskd_;
};

TEST_F(TlsTest, ServerCertificateTrustedByCa) {
  Start(false);
  absl::Status status = Call(pki_.ca_cert, false);
  EXPECT_TRUE(status.ok()) << status;
}

TEST_F(TlsTest, UntrustedServerCertificateFailsTheHandshake) {
  Start(false);
  EXPECT_EQ(Call(pki_.other_ca_cert, false).code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(TlsTest, PlaintextClientCannotTalkToTlsServer) {
  Start(false);
  TaskClient::Options options;
  options.deadline = absl::Seconds(5);
  TaskClient client(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", taskd_.port()),
                          grpc::InsecureChannelCredentials()),
      options);
  EXPECT_FALSE(client.Get("x").ok());
}

TEST_F(TlsTest, MutualTlsNeedsAClientCertificate) {
  Start(true);
  EXPECT_EQ(Call(pki_.ca_cert, false).code(), absl::StatusCode::kUnavailable);
  absl::Status status = Call(pki_.ca_cert, true);
  EXPECT_TRUE(status.ok()) << status;
}

TEST(OpenChannelTest, ContradictoryOptionsAreInvalidArgument) {
  ChannelOptions half;
  half.tls_cert_pem = "-----BEGIN CERTIFICATE-----";
  EXPECT_EQ(OpenChannel(half).status().code(),
            absl::StatusCode::kInvalidArgument);
  ChannelOptions name_without_tls;
  name_without_tls.tls_server_name = "localhost";
  EXPECT_EQ(OpenChannel(name_without_tls).status().code(),
            absl::StatusCode::kInvalidArgument);
  ChannelOptions no_address;
  no_address.address = "";
  EXPECT_EQ(OpenChannel(no_address).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(OpenChannel(ChannelOptions()).ok());
}

}  // namespace
}  // namespace taskd
