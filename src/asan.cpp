// asan.cpp: fiber-switch annotations for AddressSanitizer builds (see asan.hpp).
#include "asan.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>

namespace weft::detail::asan {
namespace {
thread_local bool pending = false;
thread_local void* const* incoming_fake_stack = nullptr;
}  // namespace

void start_switch(void** outgoing, void* const* incoming, const void* bottom,
                  std::size_t size) noexcept {
  finish_switch();
  __sanitizer_start_switch_fiber(outgoing, bottom, size);
  pending = true;
  incoming_fake_stack = incoming;
}

void finish_switch() noexcept {
  if (!pending) return;
  pending = false;
  const void* old_bottom = nullptr;
  std::size_t old_size = 0;
  __sanitizer_finish_switch_fiber(incoming_fake_stack ? *incoming_fake_stack : nullptr, &old_bottom,
                                  &old_size);
}

}  // namespace weft::detail::asan
#endif
