// A throwaway PKI for TLS tests, made with the openssl command: a CA, a
// server certificate for localhost and 127.0.0.1 and a client certificate
// (both signed by the CA), and a second, unrelated CA.
//
//   testing::TempDir dir;
//   absl::StatusOr<testing::TestCertificates> pki =
//       testing::TestCertificates::Make(dir.path());
//   ASSERT_TRUE(pki.ok()) << pki.status();
//   ... "--tls_cert=" + pki->server_cert ...
#ifndef TASKD_TESTS_TEST_CERTIFICATES_H_
#define TASKD_TESTS_TEST_CERTIFICATES_H_

#include <string>

#include "absl/status/statusor.h"

namespace taskd::testing {

struct TestCertificates {
  // Writes the files into `dir` (which must exist). Internal, with
  // openssl's output, if a step fails.
  static absl::StatusOr<TestCertificates> Make(const std::string& dir);

  // Paths of PEM files.
  std::string ca_cert;
  std::string server_cert, server_key;  // CN=localhost, SAN localhost, IP
  std::string client_cert, client_key;  // CN=agent-7, clientAuth
  std::string other_ca_cert;            // signed nothing here
};

// The contents of a file ("" if it cannot be read).
std::string ReadFile(const std::string& path);

}  // namespace taskd::testing

#endif  // TASKD_TESTS_TEST_CERTIFICATES_H_
