// taskctl against a secured taskd, both as a user runs them: the real
// binaries, over the wire. Tokens (each role, a wrong one, none, another
// tenant's task, $TASKD_TOKEN), TLS and mutual TLS; exit codes and output.
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth.h"
#include "tests/taskd_process.h"
#include "tests/test_certificates.h"
#include "tests/test_util.h"

namespace taskd {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kTenantA[] = "aaaaaaaa-0000-4000-8000-000000000001";
constexpr char kTenantB[] = "bbbbbbbb-0000-4000-8000-000000000002";

using Result = testing::CommandResult;

class TaskctlSecurityTest : public ::testing::Test {
 protected:
  // Runs taskctl with `env` (NAME=VALUE) and nothing else of the caller's
  // TASKD_* environment.
  Result Taskctl(const std::vector<std::string>& args,
                 const std::vector<std::string>& env = {},
                 absl::Duration stop_after = absl::ZeroDuration()) {
    std::vector<std::string> argv;
    argv.push_back("--server=" + server_address_);
    argv.push_back("--timeout=5s");
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunTaskctl(argv, env, stop_after);
  }

  void StartTaskd(std::vector<std::string> flags) {
    taskd_ =
        std::make_unique<testing::TaskdProcess>(testing::TaskdProcess::Options{
            .flags = std::move(flags), .db_path = dir_.File("taskd.db")});
    absl::Status started = taskd_->Start();
    ASSERT_TRUE(started.ok()) << started;
    server_address_ = taskd_->address();
  }

  testing::TempDir dir_;
  std::unique_ptr<testing::TaskdProcess> taskd_;
  std::string server_address_;
};

class TaskctlTokenTest : public TaskctlSecurityTest {
 protected:
  void SetUp() override {
    std::ofstream tokens(dir_.File("tokens"));
    for (const auto& [token, tenant_role] : std::map<std::string, std::string>{
             {"viewer-a", absl::StrCat(kTenantA, " viewer")},
             {"issuer-a", absl::StrCat(kTenantA, " issuer")},
             {"executor-a", absl::StrCat(kTenantA, " executor")},
             {"admin-b", absl::StrCat(kTenantB, " admin")},
             {"root", "* admin"}}) {
      tokens << Authorizer::HashToken(token) << " " << tenant_role << "\n";
    }
    tokens.close();
    StartTaskd({"--sync=normal", "--auth_tokens=" + dir_.File("tokens")});
  }
};

TEST_F(TaskctlTokenTest, NoTokenAndAWrongTokenAreUnauthenticated) {
  Result none = Taskctl({"list"});
  EXPECT_EQ(none.rc, 1) << none;
  EXPECT_THAT(none.err, HasSubstr("UNAUTHENTICATED: missing credentials"));
  Result wrong = Taskctl({"--token=not-a-token", "list"});
  EXPECT_EQ(wrong.rc, 1) << wrong;
  EXPECT_THAT(wrong.err, HasSubstr("UNAUTHENTICATED: unknown token"));
  Result wrong_env = Taskctl({"list"}, {"TASKD_TOKEN=not-a-token"});
  EXPECT_EQ(wrong_env.rc, 1) << wrong_env;
  EXPECT_THAT(wrong_env.err, HasSubstr("UNAUTHENTICATED: unknown token"));
}

TEST_F(TaskctlTokenTest, EachRoleMayDoWhatItsRoleAllowsAndNothingElse) {
  // issuer: creates and cancels, may not move a task along.
  Result created = Taskctl({"--token=issuer-a", "create", "--type=backup",
                            "--id=job-1", "--tenant-id", kTenantA});
  ASSERT_EQ(created.rc, 0) << created;
  EXPECT_THAT(created.out, HasSubstr("job-1"));
  Result issuer_assign =
      Taskctl({"--token=issuer-a", "assign", "job-1", "--executor=agent-7"});
  EXPECT_EQ(issuer_assign.rc, 1) << issuer_assign;
  EXPECT_THAT(issuer_assign.err,
              HasSubstr("PERMISSION_DENIED: role issuer may not call"));

  // viewer: reads, may not create.
  Result viewer_get =
      Taskctl({"--token=viewer-a", "get", "job-1", "-o", "json"});
  EXPECT_EQ(viewer_get.rc, 0) << viewer_get;
  EXPECT_THAT(viewer_get.out, HasSubstr("\"state\": \"enqueued\""));
  Result viewer_create =
      Taskctl({"--token=viewer-a", "create", "--type=backup"});
  EXPECT_EQ(viewer_create.rc, 1) << viewer_create;
  EXPECT_THAT(viewer_create.err, HasSubstr("PERMISSION_DENIED"));

  // executor: assigns, starts and completes, may not create or delete.
  Result assigned = Taskctl({"--token=executor-a", "assign", "job-1",
                             "--executor=agent-7", "-o", "json"});
  EXPECT_EQ(assigned.rc, 0) << assigned;
  const std::string lease =
      "--lease=" + testing::JsonField(assigned.out, "leaseToken");
  for (const std::vector<std::string>& move :
       {std::vector<std::string>{"start", "job-1", lease},
        std::vector<std::string>{"complete", "job-1", "--result=ok", lease}}) {
    std::vector<std::string> args = {"--token=executor-a"};
    args.insert(args.end(), move.begin(), move.end());
    Result run = Taskctl(args);
    EXPECT_EQ(run.rc, 0) << run;
  }
  Result executor_delete = Taskctl({"--token=executor-a", "delete", "job-1"});
  EXPECT_EQ(executor_delete.rc, 1) << executor_delete;
  EXPECT_THAT(executor_delete.err, HasSubstr("PERMISSION_DENIED"));

  // The token may come from $TASKD_TOKEN; --token wins over it.
  Result from_env = Taskctl({"get", "job-1"}, {"TASKD_TOKEN=viewer-a"});
  EXPECT_EQ(from_env.rc, 0) << from_env;
  EXPECT_THAT(from_env.out, HasSubstr("completed"));
  Result flag_wins =
      Taskctl({"--token=viewer-a", "delete", "job-1"}, {"TASKD_TOKEN=root"});
  EXPECT_EQ(flag_wins.rc, 1) << flag_wins;
  EXPECT_THAT(flag_wins.err, HasSubstr("PERMISSION_DENIED"));
}

TEST_F(TaskctlTokenTest, AnotherTenantsTaskIsNotThere) {
  ASSERT_EQ(Taskctl({"--token=issuer-a", "create", "--type=backup",
                     "--id=a-task", "--tenant-id", kTenantA})
                .rc,
            0);
  Result get = Taskctl({"--token=admin-b", "get", "a-task"});
  EXPECT_EQ(get.rc, 1) << get;
  EXPECT_THAT(get.err, HasSubstr("NOT_FOUND"));
  Result cancel = Taskctl({"--token=admin-b", "cancel", "a-task"});
  EXPECT_EQ(cancel.rc, 1) << cancel;
  EXPECT_THAT(cancel.err, HasSubstr("NOT_FOUND"));
  Result list = Taskctl({"--token=admin-b", "list", "-o", "json"});
  EXPECT_EQ(list.rc, 0) << list;
  EXPECT_THAT(list.out, Not(HasSubstr("a-task")));
  // A tenant-bound issuer cannot create in another tenant either.
  Result create = Taskctl(
      {"--token=admin-b", "create", "--type=backup", "--tenant-id", kTenantA});
  EXPECT_EQ(create.rc, 1) << create;
  // Every tenant's token sees it.
  Result root = Taskctl({"--token=root", "list", "-o", "json"});
  EXPECT_EQ(root.rc, 0) << root;
  EXPECT_THAT(root.out, HasSubstr("a-task"));
}

TEST_F(TaskctlTokenTest, WatchSendsTheToken) {
  ASSERT_EQ(Taskctl({"--token=issuer-a", "create", "--type=backup",
                     "--id=watched", "--tenant-id", kTenantA})
                .rc,
            0);
  // A refused watch ends at once (not retried) with the server's status.
  Result refused = Taskctl({"--token=not-a-token", "watch", "--since=1"});
  EXPECT_EQ(refused.rc, 1) << refused;
  EXPECT_THAT(refused.err, HasSubstr("UNAUTHENTICATED"));
  // An accepted one runs until stopped; `timeout` stops it after it has
  // printed the history.
  Result watched =
      Taskctl({"--token=viewer-a", "-o", "json", "watch", "--since=1"}, {},
              absl::Seconds(3));
  EXPECT_EQ(watched.rc, 124) << watched;  // ended by timeout, not an error
  EXPECT_THAT(watched.out, HasSubstr("\"watched\""));
}

class TaskctlTlsTest : public TaskctlSecurityTest {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::TestCertificates> pki =
        testing::TestCertificates::Make(dir_.path());
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
  }
  std::vector<std::string> ServerTls() {
    return {"--sync=normal", "--tls_cert=" + pki_.server_cert,
            "--tls_key=" + pki_.server_key};
  }
  testing::TestCertificates pki_;
};

TEST_F(TaskctlTlsTest, TlsNeedsTheRightCa) {
  StartTaskd(ServerTls());
  Result plaintext = Taskctl({"list"});
  EXPECT_EQ(plaintext.rc, 1) << plaintext;
  EXPECT_THAT(plaintext.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(plaintext.err, HasSubstr("if it serves TLS, give --tls"));
  Result other_ca = Taskctl({"--tls-ca=" + pki_.other_ca_cert, "list"});
  EXPECT_EQ(other_ca.rc, 1) << other_ca;
  EXPECT_THAT(other_ca.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(other_ca.err, HasSubstr("no TLS connection: check"));
  Result created = Taskctl(
      {"--tls-ca=" + pki_.ca_cert, "create", "--type=backup", "--id=over-tls"});
  EXPECT_EQ(created.rc, 0) << created;
  Result listed = Taskctl({"--tls-ca=" + pki_.ca_cert, "list"});
  EXPECT_EQ(listed.rc, 0) << listed;
  EXPECT_THAT(listed.out, HasSubstr("over-tls"));
  // --tls alone trusts the default roots, which gRPC reads from
  // $GRPC_DEFAULT_SSL_ROOTS_FILE_PATH when it is set.
  Result system_roots =
      Taskctl({"--tls", "list"},
              {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=" + pki_.other_ca_cert});
  EXPECT_EQ(system_roots.rc, 1) << system_roots;
  Result our_roots = Taskctl(
      {"--tls", "list"}, {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=" + pki_.ca_cert});
  EXPECT_EQ(our_roots.rc, 0) << our_roots;
  EXPECT_THAT(our_roots.out, HasSubstr("over-tls"));
}

TEST_F(TaskctlTlsTest, TlsServerNameChecksTheCertificateAgainstAnotherName) {
  StartTaskd(ServerTls());
  Result right = Taskctl(
      {"--tls-ca=" + pki_.ca_cert, "--tls-server-name=localhost", "list"});
  EXPECT_EQ(right.rc, 0) << right;
  Result wrong = Taskctl({"--tls-ca=" + pki_.ca_cert,
                          "--tls-server-name=tasks.example.com", "list"});
  EXPECT_EQ(wrong.rc, 1) << wrong;
  EXPECT_THAT(wrong.err, HasSubstr("UNAVAILABLE"));
}

TEST_F(TaskctlTlsTest, MutualTlsNeedsTheClientCertificate) {
  std::vector<std::string> flags = ServerTls();
  flags.push_back("--tls_client_ca=" + pki_.ca_cert);
  StartTaskd(flags);
  Result without = Taskctl({"--tls-ca=" + pki_.ca_cert, "list"});
  EXPECT_EQ(without.rc, 1) << without;
  EXPECT_THAT(without.err, HasSubstr("UNAVAILABLE"));
  Result with =
      Taskctl({"--tls-ca=" + pki_.ca_cert, "--tls-cert=" + pki_.client_cert,
               "--tls-key=" + pki_.client_key, "create", "--type=backup",
               "--id=mutual"});
  EXPECT_EQ(with.rc, 0) << with;
  EXPECT_THAT(with.out, HasSubstr("mutual"));
}

TEST_F(TaskctlTlsTest, TlsAndTokensTogether) {
  std::ofstream tokens(dir_.File("tokens"));
  tokens << Authorizer::HashToken("viewer") << " * viewer\n";
  tokens.close();
  std::vector<std::string> flags = ServerTls();
  flags.push_back("--auth_tokens=" + dir_.File("tokens"));
  StartTaskd(flags);
  Result no_token = Taskctl({"--tls-ca=" + pki_.ca_cert, "list"});
  EXPECT_EQ(no_token.rc, 1) << no_token;
  EXPECT_THAT(no_token.err, HasSubstr("UNAUTHENTICATED"));
  Result token =
      Taskctl({"--tls-ca=" + pki_.ca_cert, "list"}, {"TASKD_TOKEN=viewer"});
  EXPECT_EQ(token.rc, 0) << token;
}

TEST_F(TaskctlTlsTest, BadSecurityFlagsAreUsageErrorsNamingTheFlag) {
  server_address_ = "127.0.0.1:1";  // never dialled
  Result missing = Taskctl({"--tls-ca=" + dir_.File("no-such.pem"), "list"});
  EXPECT_EQ(missing.rc, 2) << missing;
  EXPECT_THAT(missing.err, HasSubstr("--tls-ca: cannot read"));
  Result not_pem = Taskctl({"--tls-ca=/etc/hostname", "list"});
  EXPECT_EQ(not_pem.rc, 2) << not_pem;
  EXPECT_THAT(not_pem.err, HasSubstr("--tls-ca: \"/etc/hostname\" is not a "
                                     "PEM file"));
  Result half = Taskctl(
      {"--tls-ca=" + pki_.ca_cert, "--tls-cert=" + pki_.client_cert, "list"});
  EXPECT_EQ(half.rc, 2) << half;
  EXPECT_THAT(half.err, HasSubstr("--tls-cert and --tls-key go together"));
  Result name = Taskctl({"--tls-server-name=localhost", "list"});
  EXPECT_EQ(name.rc, 2) << name;
  EXPECT_THAT(name.err, HasSubstr("--tls-server-name needs --tls"));
}

}  // namespace
}  // namespace taskd
