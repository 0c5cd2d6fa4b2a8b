// weft/this_fiber.hpp: operations on the calling fiber (or plain thread).
#pragma once

#include <chrono>
#include <type_traits>

#include <weft/detail/time.hpp>

namespace weft::this_fiber {

namespace detail {
void sleep_until_steady(std::chrono::steady_clock::time_point deadline);
}

// yield() lets the other ready fibers of this worker run first. On a plain thread it yields
// the thread. A cancellation point: throws weft::error(cancelled) in a cancelled fiber, and
// weft::error(deadline_exceeded) past the deadline in force (weft/deadline.hpp).
void yield();

// sleep_until() suspends the calling fiber (blocks a plain thread) until tp, of any clock
// (converted once to steady_clock; time points out of range saturate). A cancellation point:
// a cancelled fiber wakes at once and throws weft::error(cancelled); under a deadline, the
// sleep ends at the deadline with weft::error(deadline_exceeded).
template <class Clock, class Dur>
void sleep_until(std::chrono::time_point<Clock, Dur> tp) {
  detail::sleep_until_steady(weft::detail::deadline_at(tp));
}

// sleep_for() is sleep_until(now + d); any duration is fine (hours::max() sleeps forever).
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  detail::sleep_until_steady(weft::detail::deadline_after(d));
}

// cancellation_requested() is true when the calling fiber's cancellation was requested (its
// task_group, or an enclosing one, was cancelled) or the deadline in force passed. Never
// blocks. On a plain thread only a deadline (with_deadline) makes it true.
bool cancellation_requested() noexcept;

// throw_if_cancelled() throws if cancellation_requested(): weft::error(deadline_exceeded)
// when the deadline came before any cancellation request, weft::error(cancelled) otherwise.
void throw_if_cancelled();

}  // namespace weft::this_fiber
