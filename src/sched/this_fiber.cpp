// this_fiber.cpp: yield, sleep and cancellation checks for the calling fiber.
#include <weft/this_fiber.hpp>

#include <thread>

#include <boost/fiber/operations.hpp>

#include "sched/asan.hpp"
#include "sched/cancel_scope.hpp"
#include "sched/fiber_record.hpp"
#include "sched/scheduler.hpp"
#include "sched/waiting.hpp"

namespace weft::this_fiber {

namespace {

// scope() is the cancellation the calling fiber or plain thread is under (nullptr: none).
const weft::detail::cancel_scope* scope() noexcept {
  const weft::detail::fiber_state* f = weft::detail::tl_fiber;
  return f != nullptr ? f->scope : nullptr;
}

}  // namespace

bool cancellation_requested() noexcept {
  return weft::detail::is_cancelled(scope());
}

void throw_if_cancelled() {
  const weft::detail::cancel_scope* s = scope();
  if (weft::detail::is_cancelled(s)) weft::detail::throw_cancelled(s);
}

void yield() {
  throw_if_cancelled();
  weft::detail::fiber_record* self = weft::detail::current_record();
  if (self == nullptr) {
    std::this_thread::yield();
    return;
  }
  self->yielding = true;
  boost::this_fiber::yield();
  weft::detail::resumed();
  throw_if_cancelled();
}

namespace detail {

void sleep_until_steady(std::chrono::steady_clock::time_point deadline) {
  using std::chrono::steady_clock;
  weft::detail::fiber_record* self = weft::detail::current_record();
  const bool forever = deadline == steady_clock::time_point::max();
  static const weft::detail::wait_label label{"sleep", nullptr, nullptr};
  const weft::detail::wait_mark mark(label);
  for (;;) {
    throw_if_cancelled();
    if (!forever && steady_clock::now() >= deadline) return;
    if (self != nullptr) {
      self->park(forever ? nullptr : &deadline, true);
      continue;
    }
    // A plain thread: only a deadline (with_deadline) can end its sleep early.
    steady_clock::time_point storage;
    const steady_clock::time_point* limit =
        weft::detail::wait_limit(forever ? nullptr : &deadline, scope(), storage);
    if (limit == nullptr) {
      std::this_thread::sleep_for(std::chrono::hours(24));
    } else {
      std::this_thread::sleep_until(*limit);
    }
  }
}

}  // namespace detail
}  // namespace weft::this_fiber
