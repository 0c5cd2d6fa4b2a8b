// tsan.cpp: fiber annotations for ThreadSanitizer builds (see tsan.hpp).
#include "sched/tsan.hpp"

#if defined(WEFT_TSAN)
#include <sanitizer/tsan_interface.h>

#include <utility>

// No entry/exit instrumentation here: switch_to_*() return on the fiber switched to.
#define WEFT_NO_TSAN __attribute__((no_sanitize_thread))

namespace weft::detail::tsan {
namespace {
// Plain pointers with no destructor: Boost's scheduler switches contexts while the thread
// exits, after C++ thread_locals with destructors are gone.
constinit thread_local void* main_fiber = nullptr;  // the thread's own state
constinit thread_local void* dispatcher_fiber = nullptr;
constinit thread_local void* raw_fiber = nullptr;

WEFT_NO_TSAN void go(void* to) noexcept {
  // The first switch of a worker is always from its main context (the only one that has
  // run): what is current then is the thread's own state.
  void* current = __tsan_get_current_fiber();
  if (main_fiber == nullptr) main_fiber = current;
  if (to != current) __tsan_switch_to_fiber(to, 0);
}
}  // namespace

WEFT_NO_TSAN void* create_fiber() noexcept {
  return __tsan_create_fiber(0);
}

WEFT_NO_TSAN void destroy_fiber(void* fiber) noexcept {
  if (fiber != nullptr) __tsan_destroy_fiber(fiber);
}

WEFT_NO_TSAN void switch_to_fiber(void* fiber) noexcept {
  go(fiber);
}

WEFT_NO_TSAN void switch_to_main() noexcept {
  if (main_fiber == nullptr) return;  // never left
  go(main_fiber);
}

WEFT_NO_TSAN void switch_to_dispatcher() noexcept {
  if (dispatcher_fiber == nullptr) {
    dispatcher_fiber = __tsan_create_fiber(0);
    __tsan_set_fiber_name(dispatcher_fiber, "weft dispatcher");
  }
  go(dispatcher_fiber);
}

WEFT_NO_TSAN void switch_to_raw() noexcept {
  if (raw_fiber == nullptr) {
    raw_fiber = __tsan_create_fiber(0);
    __tsan_set_fiber_name(raw_fiber, "raw Boost fiber");
  }
  go(raw_fiber);
}

WEFT_NO_TSAN void thread_ends() noexcept {
  switch_to_main();
  destroy_fiber(std::exchange(dispatcher_fiber, nullptr));
  destroy_fiber(std::exchange(raw_fiber, nullptr));
  main_fiber = nullptr;
}

WEFT_NO_TSAN void release(const void* addr) noexcept {
  __tsan_release(const_cast<void*>(addr));
}

WEFT_NO_TSAN void acquire(const void* addr) noexcept {
  __tsan_acquire(const_cast<void*>(addr));
}

}  // namespace weft::detail::tsan
#endif
