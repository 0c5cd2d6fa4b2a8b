// asan.cpp: fiber-switch annotations for AddressSanitizer builds (see asan.hpp).
#include "asan.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>

#include <vector>

namespace weft::detail::asan {
namespace {
thread_local bool pending = false;
thread_local void* const* incoming_fake_stack = nullptr;
// Fake stacks of fibers that ended on this thread, for fibers that start here. ASan frees a
// fake stack only when the switch away from an ending fiber passes nullptr, but that frees it
// under the frames still running on it (the scheduler's, until the switch completes) and
// crashes; handing it to the next new fiber instead keeps their number at the peak of live
// fibers. Its dead frames are collected by ASan as the new fiber's stack moves past them.
thread_local std::vector<void*> spare_fake_stacks;
}  // namespace

void start_switch(void** outgoing, void* const* incoming, const void* bottom,
                  std::size_t size) noexcept {
  finish_switch();
  void* ending = nullptr;
  __sanitizer_start_switch_fiber(outgoing != nullptr ? outgoing : &ending, bottom, size);
  pending = true;
  incoming_fake_stack = incoming;
  if (ending != nullptr) {
    try {
      spare_fake_stacks.push_back(ending);
    } catch (...) {
      // Out of memory in a sanitizer build: that fake stack is leaked.
    }
  }
}

void finish_switch() noexcept {
  if (!pending) return;
  pending = false;
  void* fake_stack = incoming_fake_stack ? *incoming_fake_stack : nullptr;
  if (fake_stack == nullptr && !spare_fake_stacks.empty()) {
    fake_stack = spare_fake_stacks.back();
    spare_fake_stacks.pop_back();
  }
  const void* old_bottom = nullptr;
  std::size_t old_size = 0;
  __sanitizer_finish_switch_fiber(fake_stack, &old_bottom, &old_size);
}

creating_fiber::creating_fiber() noexcept {
  finish_switch();
  // A "switch" that never happens: while it is pending ASan gives no fake frames out.
  __sanitizer_start_switch_fiber(&saved_, nullptr, 0);
}

creating_fiber::~creating_fiber() {
  const void* bottom = nullptr;
  std::size_t size = 0;
  // Finishing takes the announced (empty) bounds; a second switch to the stack we are on,
  // with the bounds the first one reported, puts them back.
  __sanitizer_finish_switch_fiber(saved_, &bottom, &size);
  void* again = nullptr;
  __sanitizer_start_switch_fiber(&again, bottom, size);
  __sanitizer_finish_switch_fiber(again, nullptr, nullptr);
}

}  // namespace weft::detail::asan
#endif
