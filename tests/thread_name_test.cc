// SetThreadName: the name the system shows for one of taskd's threads.

#include "base/thread_name.h"

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace taskd {
namespace {

// Runs `body` on a thread of its own, so that the test's thread keeps its
// name.
template <typename Body>
void OnNewThread(Body body) {
  std::thread thread(body);
  thread.join();
}

TEST(ThreadNameTest, NamesTheCallingThread) {
  std::string seen;
  OnNewThread([&] {
    SetThreadName("taskd-test");
    seen = ThreadName();
  });
  EXPECT_EQ(seen, "taskd-test");
}

TEST(ThreadNameTest, ALongNameIsCutToWhatLinuxKeeps) {
  std::string seen;
  OnNewThread([&] {
    SetThreadName("taskd-a-name-far-too-long");
    seen = ThreadName();
  });
  EXPECT_EQ(seen, "taskd-a-name-fa");
  EXPECT_EQ(seen.size(), kMaxThreadNameLength);
}

TEST(ThreadNameTest, OnlyTheCallingThreadIsRenamed) {
  const std::string before = ThreadName();
  OnNewThread([] { SetThreadName("taskd-other"); });
  EXPECT_EQ(ThreadName(), before);
  EXPECT_NE(before, "taskd-other");
}

}  // namespace
}  // namespace taskd
