// asan.cpp: fiber-switch annotations for AddressSanitizer builds (see asan.hpp).
#include "sched/asan.hpp"

#include <string_view>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>

namespace weft::detail::asan {
namespace {
thread_local bool pending = false;
thread_local void* const* incoming_fake_stack = nullptr;
// Fake stacks of fibers that ended on this thread, for fibers that start here. ASan frees a
// fake stack only when the switch away from an ending fiber passes nullptr, but that frees it
// under the frames still running on it (the scheduler's, until the switch completes) and
// crashes; handing it to the next new fiber instead keeps their number at the peak of live
// fibers. Its dead frames are collected by ASan as the new fiber's stack moves past them.
// A plain array: it must outlive the thread's Boost scheduler, whose teardown switches stacks
// after the thread's C++ thread_locals are gone. Beyond its size a fake stack is leaked.
constexpr unsigned kSpares = 1024;
constinit thread_local void* spare_fake_stacks[kSpares] = {};
constinit thread_local unsigned spare_count = 0;
}  // namespace

void start_switch(void** outgoing, void* const* incoming, const void* bottom,
                  std::size_t size) noexcept {
  finish_switch();
  void* ending = nullptr;
  __sanitizer_start_switch_fiber(outgoing != nullptr ? outgoing : &ending, bottom, size);
  pending = true;
  incoming_fake_stack = incoming;
  if (ending != nullptr && spare_count < kSpares) spare_fake_stacks[spare_count++] = ending;
}

void finish_switch() noexcept {
  if (!pending) return;
  pending = false;
  void* fake_stack = incoming_fake_stack ? *incoming_fake_stack : nullptr;
  if (fake_stack == nullptr && spare_count != 0) fake_stack = spare_fake_stacks[--spare_count];
  const void* old_bottom = nullptr;
  std::size_t old_size = 0;
  __sanitizer_finish_switch_fiber(fake_stack, &old_bottom, &old_size);
}

bool heap_block(const void* p, const void** bottom, std::size_t* size) noexcept {
  char kind[16];
  void* begin = nullptr;
  std::size_t bytes = 0;
  const char* what = __asan_locate_address(const_cast<void*>(p), kind, sizeof kind, &begin, &bytes);
  if (what == nullptr || std::string_view(what) != "heap" || begin == nullptr) return false;
  *bottom = begin;
  *size = bytes;
  return true;
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
