// ThreadSanitizer builds only (TASKD_TSAN): makes Debian's Abseil mutexes
// visible to ThreadSanitizer.
//
// Why: absl::Mutex is built on atomics and futexes inside
// libabsl_synchronization.so, which Debian compiles without -fsanitize=thread
// and so without Abseil's own TSan annotations. ThreadSanitizer then sees no
// happens-before edge from one thread's Unlock() to the next thread's Lock(),
// and reports every access to data guarded by an absl::Mutex (the store, the
// watch hub, the clock, gRPC's own state) as a race. Rebuilding Abseil (and
// gRPC on top of it) with TSan is not possible with Debian's packages.
//
// How: this file defines the Mutex and CondVar entry points under their
// exact (mangled) names, so that the test executable's definitions interpose
// the library's (the executable is linked with -rdynamic, and calls from
// libgrpc and from libabsl itself go through the PLT). Each wrapper calls the
// real function (found with dlsym(RTLD_NEXT)) and tells TSan what it means:
// releasing the mutex is a release on its address, acquiring it an acquire.
// Await, LockWhen and CondVar::Wait may release and re-acquire inside, so
// they count as both; and since Abseil evaluates a waiter's Condition inside
// those calls, each time with the mutex held, the Condition is wrapped in
// one that acquires first. That is exactly the happens-before a mutex gives,
// so no race is hidden that the mutex did not prevent.
//
// The names are Debian's build of Abseil 20220623, whose inline namespace is
// `debian3`; a different Abseil fails to link this file (missing symbols are
// reported at the first call).
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

// A Condition that, for TSan, acquires `mu` before evaluating `inner` and
// releases it after: Abseil evaluates it with the mutex held, and may then
// release the mutex to wait.
struct Acquiring {
  void* mu;
  const absl::Condition* inner;

  static bool Eval(void* self) {
    auto* a = static_cast<Acquiring*>(self);
    __tsan_acquire(a->mu);
    bool holds = a->inner->Eval();
    __tsan_release(a->mu);
    return holds;
  }
  absl::Condition condition() { return absl::Condition(&Eval, this); }
};

// absl::Duration and absl::Time by value: an int64 and a uint32.
struct Duration {
  int64_t rep_hi;
  uint32_t rep_lo;
};
struct Time {
  Duration rep;
};

// Debian builds Abseil without NDEBUG, so every absl::Mutex also runs
// Abseil's lock-order (deadlock cycle) detector, whose graph is guarded by
// an internal spinlock TSan cannot see either: it reports races inside
// GraphCycles. The detector proves nothing TSan needs; it is switched off
// before main() in these test binaries.
const bool kNoDeadlockGraph = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return true;
}();

template <typename F>
F Real(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_annotations: %s not found\n", name);
    std::abort();
  }
  return reinterpret_cast<F>(f);
}

#define TASKD_REAL(type, mangled) static const auto real = Real<type>(mangled);

}  // namespace

// Each definition carries the mangled name of the member function it stands
// for; `mu` is `this`.
#define TASKD_MUTEX(name) "_ZN4absl7debian35Mutex" name

extern "C" {

void TaskdMutexLock(void* mu) __asm__(TASKD_MUTEX("4LockEv"));
void TaskdMutexLock(void* mu) {
  TASKD_REAL(void (*)(void*), TASKD_MUTEX("4LockEv"));
  real(mu);
  __tsan_acquire(mu);
}

void TaskdMutexReaderLock(void* mu) __asm__(TASKD_MUTEX("10ReaderLockEv"));
void TaskdMutexReaderLock(void* mu) {
  TASKD_REAL(void (*)(void*), TASKD_MUTEX("10ReaderLockEv"));
  real(mu);
  __tsan_acquire(mu);
}

bool TaskdMutexTryLock(void* mu) __asm__(TASKD_MUTEX("7TryLockEv"));
bool TaskdMutexTryLock(void* mu) {
  TASKD_REAL(bool (*)(void*), TASKD_MUTEX("7TryLockEv"));
  bool locked = real(mu);
  if (locked) __tsan_acquire(mu);
  return locked;
}

bool TaskdMutexReaderTryLock(void* mu) __asm__(
    TASKD_MUTEX("13ReaderTryLockEv"));
bool TaskdMutexReaderTryLock(void* mu) {
  TASKD_REAL(bool (*)(void*), TASKD_MUTEX("13ReaderTryLockEv"));
  bool locked = real(mu);
  if (locked) __tsan_acquire(mu);
  return locked;
}

void TaskdMutexUnlock(void* mu) __asm__(TASKD_MUTEX("6UnlockEv"));
void TaskdMutexUnlock(void* mu) {
  TASKD_REAL(void (*)(void*), TASKD_MUTEX("6UnlockEv"));
  __tsan_release(mu);
  real(mu);
}

void TaskdMutexReaderUnlock(void* mu) __asm__(TASKD_MUTEX("12ReaderUnlockEv"));
void TaskdMutexReaderUnlock(void* mu) {
  TASKD_REAL(void (*)(void*), TASKD_MUTEX("12ReaderUnlockEv"));
  __tsan_release(mu);
  real(mu);
}

void TaskdMutexLockWhen(void* mu, const void* cond) __asm__(
    TASKD_MUTEX("8LockWhenERKNS0_9ConditionE"));
void TaskdMutexLockWhen(void* mu, const void* cond) {
  TASKD_REAL(void (*)(void*, const void*),
             TASKD_MUTEX("8LockWhenERKNS0_9ConditionE"));
  Acquiring a{mu, static_cast<const absl::Condition*>(cond)};
  absl::Condition c = a.condition();
  real(mu, &c);
  __tsan_acquire(mu);
}

void TaskdMutexReaderLockWhen(void* mu, const void* cond) __asm__(
    TASKD_MUTEX("14ReaderLockWhenERKNS0_9ConditionE"));
void TaskdMutexReaderLockWhen(void* mu, const void* cond) {
  TASKD_REAL(void (*)(void*, const void*),
             TASKD_MUTEX("14ReaderLockWhenERKNS0_9ConditionE"));
  Acquiring a{mu, static_cast<const absl::Condition*>(cond)};
  absl::Condition c = a.condition();
  real(mu, &c);
  __tsan_acquire(mu);
}

bool TaskdMutexLockWhenWithTimeout(void* mu, const void* cond, Duration timeout) __asm__(
    TASKD_MUTEX("19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
bool TaskdMutexLockWhenWithTimeout(void* mu, const void* cond,
                                   Duration timeout) {
  TASKD_REAL(
      bool (*)(void*, const void*, Duration),
      TASKD_MUTEX("19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  Acquiring a{mu, static_cast<const absl::Condition*>(cond)};
  absl::Condition c = a.condition();
  bool result = real(mu, &c, timeout);
  __tsan_acquire(mu);  // held on return either way
  return result;
}

bool TaskdMutexLockWhenWithDeadline(void* mu, const void* cond, Time deadline) __asm__(
    TASKD_MUTEX("20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
bool TaskdMutexLockWhenWithDeadline(void* mu, const void* cond, Time deadline) {
  TASKD_REAL(bool (*)(void*, const void*, Time),
             TASKD_MUTEX("20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  Acquiring a{mu, static_cast<const absl::Condition*>(cond)};
  absl::Condition c = a.condition();
  bool result = real(mu, &c, deadline);
  __tsan_acquire(mu);
  return result;
}

void TaskdMutexAwait(void* mu, const void* cond) __asm__(
    TASKD_MUTEX("5AwaitERKNS0_9ConditionE"));
void TaskdMutexAwait(void* mu, const void* cond) {
  TASKD_REAL(void (*)(void*, const void*),
             TASKD_MUTEX("5AwaitERKNS0_9ConditionE"));
  __tsan_release(mu);
  Acquiring a{mu, static_cast<const absl::Condition*>(cond)};
  absl::Condition c = a.condition();
  real(mu, &c);
  __tsan_acquire(mu);
}

bool TaskdMutexAwaitWithTimeout(void* mu, const void* cond, Duration timeout) __asm__(
    TASKD_MUTEX("16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
bool TaskdMutexAwaitWithTimeout(void* mu, const void* cond, Duration timeout) {
  TASKD_REAL(bool (*)(void*, const void*, Duration),
             TASKD_MUTEX("16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  __tsan_release(mu);
  Acquiring a{mu, static_cast<const absl::Condition*>(cond)};
  absl::Condition c = a.condition();
  bool result = real(mu, &c, timeout);
  __tsan_acquire(mu);
  return result;
}

bool TaskdMutexAwaitWithDeadline(void* mu, const void* cond, Time deadline) __asm__(
    TASKD_MUTEX("17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
bool TaskdMutexAwaitWithDeadline(void* mu, const void* cond, Time deadline) {
  TASKD_REAL(bool (*)(void*, const void*, Time),
             TASKD_MUTEX("17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  __tsan_release(mu);
  Acquiring a{mu, static_cast<const absl::Condition*>(cond)};
  absl::Condition c = a.condition();
  bool result = real(mu, &c, deadline);
  __tsan_acquire(mu);
  return result;
}

#define TASKD_CONDVAR(name) "_ZN4absl7debian37CondVar" name

void TaskdCondVarWait(void* cv,
                      void* mu) __asm__(TASKD_CONDVAR("4WaitEPNS0_5MutexE"));
void TaskdCondVarWait(void* cv, void* mu) {
  TASKD_REAL(void (*)(void*, void*), TASKD_CONDVAR("4WaitEPNS0_5MutexE"));
  __tsan_release(mu);
  real(cv, mu);
  __tsan_acquire(mu);
}

bool TaskdCondVarWaitWithTimeout(void* cv, void* mu, Duration timeout) __asm__(
    TASKD_CONDVAR("15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE"));
bool TaskdCondVarWaitWithTimeout(void* cv, void* mu, Duration timeout) {
  TASKD_REAL(bool (*)(void*, void*, Duration),
             TASKD_CONDVAR("15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE"));
  __tsan_release(mu);
  bool result = real(cv, mu, timeout);
  __tsan_acquire(mu);
  return result;
}

bool TaskdCondVarWaitWithDeadline(void* cv, void* mu, Time deadline) __asm__(
    TASKD_CONDVAR("16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE"));
bool TaskdCondVarWaitWithDeadline(void* cv, void* mu, Time deadline) {
  TASKD_REAL(bool (*)(void*, void*, Time),
             TASKD_CONDVAR("16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE"));
  __tsan_release(mu);
  bool result = real(cv, mu, deadline);
  __tsan_acquire(mu);
  return result;
}

// absl::Notification: Notify() stores its flag inside the library, and
// WaitForNotification() may return on a fast path that only loads it, so
// neither goes through a Mutex call. Notify releases (on the object and on
// the flag, which the inline HasBeenNotified() loads with acquire order in
// our code); the waits acquire.
#define TASKD_NOTIFICATION(name) "_ZN4absl7debian312Notification" name
#define TASKD_NOTIFICATION_CONST(name) "_ZNK4absl7debian312Notification" name

// Layout of absl::Notification: a Mutex (one word), then the atomic flag.
static_assert(sizeof(absl::Mutex) == sizeof(intptr_t),
              "absl::Notification's layout changed");
void* NotifiedFlag(void* notification) {
  return static_cast<char*>(notification) + sizeof(absl::Mutex);
}

void TaskdNotificationNotify(void* n) __asm__(TASKD_NOTIFICATION("6NotifyEv"));
void TaskdNotificationNotify(void* n) {
  TASKD_REAL(void (*)(void*), TASKD_NOTIFICATION("6NotifyEv"));
  __tsan_release(n);
  __tsan_release(NotifiedFlag(n));
  real(n);
}

void TaskdNotificationWait(const void* n) __asm__(
    TASKD_NOTIFICATION_CONST("19WaitForNotificationEv"));
void TaskdNotificationWait(const void* n) {
  TASKD_REAL(void (*)(const void*),
             TASKD_NOTIFICATION_CONST("19WaitForNotificationEv"));
  real(n);
  __tsan_acquire(const_cast<void*>(n));
}

bool TaskdNotificationWaitWithTimeout(const void* n, Duration timeout) __asm__(
    TASKD_NOTIFICATION_CONST(
        "30WaitForNotificationWithTimeoutENS0_8DurationE"));
bool TaskdNotificationWaitWithTimeout(const void* n, Duration timeout) {
  TASKD_REAL(bool (*)(const void*, Duration),
             TASKD_NOTIFICATION_CONST(
                 "30WaitForNotificationWithTimeoutENS0_8DurationE"));
  bool notified = real(n, timeout);
  if (notified) __tsan_acquire(const_cast<void*>(n));
  return notified;
}

bool TaskdNotificationWaitWithDeadline(const void* n, Time deadline) __asm__(
    TASKD_NOTIFICATION_CONST("31WaitForNotificationWithDeadlineENS0_4TimeE"));
bool TaskdNotificationWaitWithDeadline(const void* n, Time deadline) {
  TASKD_REAL(
      bool (*)(const void*, Time),
      TASKD_NOTIFICATION_CONST("31WaitForNotificationWithDeadlineENS0_4TimeE"));
  bool notified = real(n, deadline);
  if (notified) __tsan_acquire(const_cast<void*>(n));
  return notified;
}

}  // extern "C"
