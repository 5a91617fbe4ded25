// TLS and mutual TLS handshakes with certificates made by the test.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "client/task_client.h"
#include "gtest/gtest.h"
#include "tests/test_server.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A CA, a server certificate for localhost / 127.0.0.1 and a client
    // certificate, all signed by the CA; and a second, unrelated CA.
    Openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=taskd test CA", "-keyout", File("ca.key"), "-out",
             File("ca.pem")});
    Openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=other CA", "-keyout", File("other.key"), "-out",
             File("other.pem")});
    Issue("server", "/CN=localhost",
          "subjectAltName=DNS:localhost,IP:127.0.0.1");
    Issue("client", "/CN=agent-7", "extendedKeyUsage=clientAuth");
  }

  std::string File(const std::string& name) { return dir_.File(name); }

  void Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    std::string out, err;
    ASSERT_EQ(testing::RunCommand(args, "", &out, &err), 0) << err;
  }

  void Issue(const std::string& name, const std::string& subject,
             const std::string& extension) {
    {
      std::ofstream ext(File(name + ".ext"));
      ext << extension << "\n";
    }
    Openssl({"req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
             "-keyout", File(name + ".key"), "-out", File(name + ".csr")});
    Openssl({"x509", "-req", "-in", File(name + ".csr"), "-CA", File("ca.pem"),
             "-CAkey", File("ca.key"), "-CAcreateserial", "-days", "2",
             "-extfile", File(name + ".ext"), "-out", File(name + ".pem")});
  }

  void Start(bool require_client_certificate) {
    grpc::SslServerCredentialsOptions ssl(
        require_client_certificate
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ssl.pem_key_cert_pairs.push_back(
        {Slurp(File("server.key")), Slurp(File("server.pem"))});
    if (require_client_certificate) ssl.pem_root_certs = Slurp(File("ca.pem"));
    testing::InProcessTaskd::Options options;
    options.server.store.path = File("taskd.db");
    options.server.credentials = grpc::SslServerCredentials(ssl);
    // The name the server certificate is issued for.
    options.host = "localhost";
    absl::Status started = taskd_.Start(options);
    ASSERT_TRUE(started.ok()) << started;
  }

  // Creates a task over a TLS channel trusting `ca`, presenting the client
  // certificate if `with_client_certificate`.
  absl::Status Call(const std::string& ca, bool with_client_certificate) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = Slurp(File(ca));
    if (with_client_certificate) {
      ssl.pem_cert_chain = Slurp(File("client.pem"));
      ssl.pem_private_key = Slurp(File("client.key"));
    }
    TaskClient::Options options;
    options.deadline = absl::Seconds(5);
    TaskClient client(
        grpc::CreateChannel(taskd_.address(), grpc::SslCredentials(ssl)),
        options);
    Task task;
    task.set_type("backup");
    return client.Create(task).status();
  }

  void TearDown() override { taskd_.Stop(absl::Seconds(1)); }

  testing::TempDir dir_;
  testing::InProcessTaskd taskd_;
};

TEST_F(TlsTest, ServerCertificateTrustedByCa) {
  Start(false);
  absl::Status status = Call("ca.pem", false);
  EXPECT_TRUE(status.ok()) << status;
}

TEST_F(TlsTest, UntrustedServerCertificateFailsTheHandshake) {
  Start(false);
  EXPECT_EQ(Call("other.pem", false).code(), absl::StatusCode::kUnavailable);
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
  EXPECT_EQ(Call("ca.pem", false).code(), absl::StatusCode::kUnavailable);
  absl::Status status = Call("ca.pem", true);
  EXPECT_TRUE(status.ok()) << status;
}

}  // namespace
}  // namespace taskd
