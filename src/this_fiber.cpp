// this_fiber.cpp: yield, sleep and cancellation checks for the calling fiber.
#include <weft/this_fiber.hpp>

#include <thread>

#include <boost/fiber/operations.hpp>

#include "asan.hpp"
#include "cancel_scope.hpp"
#include "fiber_record.hpp"

namespace weft::this_fiber {

bool cancellation_requested() noexcept {
  const weft::detail::fiber_state* f = weft::detail::tl_fiber;
  return f != nullptr && weft::detail::is_cancelled(f->scope);
}

void throw_if_cancelled() {
  if (cancellation_requested()) weft::detail::throw_cancelled();
}

void yield() {
  weft::detail::fiber_record* self = weft::detail::current_record();
  if (self == nullptr) {
    std::this_thread::yield();
    return;
  }
  throw_if_cancelled();
  self->yielding = true;
  boost::this_fiber::yield();
  weft::detail::asan::finish_switch();
  throw_if_cancelled();
}

namespace detail {

void sleep_until_steady(std::chrono::steady_clock::time_point deadline) {
  weft::detail::fiber_record* self = weft::detail::current_record();
  const bool forever = deadline == std::chrono::steady_clock::time_point::max();
  if (self == nullptr) {
    while (forever)
      std::this_thread::sleep_for(std::chrono::hours(24));
    std::this_thread::sleep_until(deadline);
    return;
  }
  for (;;) {
    throw_if_cancelled();
    if (!forever && std::chrono::steady_clock::now() >= deadline) return;
    self->park(forever ? nullptr : &deadline, true);
  }
}

}  // namespace detail
}  // namespace weft::this_fiber
