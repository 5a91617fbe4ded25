#include "base/thread_name.h"

#include <pthread.h>

#include <string>

namespace taskd {

void SetThreadName(absl::string_view name) {
  std::string cut(name.substr(0, kMaxThreadNameLength));
  (void)pthread_setname_np(pthread_self(), cut.c_str());
}

std::string ThreadName() {
  char name[kMaxThreadNameLength + 1] = {};
  if (pthread_getname_np(pthread_self(), name, sizeof(name)) != 0) return "";
  return name;
}

}  // namespace taskd
