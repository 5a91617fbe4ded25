#include "tests/test_certificates.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/test_util.h"

namespace taskd::testing {
namespace {

absl::Status Openssl(std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/openssl");
  std::string out, err;
  if (RunCommand(args, "", &out, &err) != 0) {
    return absl::InternalError(
        absl::StrCat(absl::StrJoin(args, " "), " failed: ", err));
  }
  return absl::OkStatus();
}

absl::Status SelfSigned(const std::string& dir, const std::string& name,
                        const std::string& subject) {
  return Openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                  "-subj", subject, "-keyout", dir + "/" + name + ".key",
                  "-out", dir + "/" + name + ".pem"});
}

// A key and a certificate for `subject`, signed by the CA in `dir`.
absl::Status Issue(const std::string& dir, const std::string& name,
                   const std::string& subject, const std::string& extension) {
  const std::string base = dir + "/" + name;
  {
    std::ofstream ext(base + ".ext");
    ext << extension << "\n";
    if (!ext) return absl::InternalError("cannot write " + base + ".ext");
  }
  if (absl::Status s =
          Openssl({"req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                   "-keyout", base + ".key", "-out", base + ".csr"});
      !s.ok()) {
    return s;
  }
  return Openssl({"x509", "-req", "-in", base + ".csr", "-CA", dir + "/ca.pem",
                  "-CAkey", dir + "/ca.key", "-CAcreateserial", "-days", "2",
                  "-extfile", base + ".ext", "-out", base + ".pem"});
}

}  // namespace

absl::StatusOr<TestCertificates> TestCertificates::Make(
    const std::string& dir) {
  for (absl::Status s :
       {SelfSigned(dir, "ca", "/CN=taskd test CA"),
        SelfSigned(dir, "other", "/CN=other CA"),
        Issue(dir, "server", "/CN=localhost",
              "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        Issue(dir, "client", "/CN=agent-7", "extendedKeyUsage=clientAuth")}) {
    if (!s.ok()) return s;
  }
  TestCertificates pki;
  pki.ca_cert = dir + "/ca.pem";
  pki.server_cert = dir + "/server.pem";
  pki.server_key = dir + "/server.key";
  pki.client_cert = dir + "/client.pem";
  pki.client_key = dir + "/client.key";
  pki.other_ca_cert = dir + "/other.pem";
  return pki;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace taskd::testing
