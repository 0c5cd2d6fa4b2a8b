// weft/deadline.hpp: deadlines that travel with the work, like the context does.
//
//   weft::with_timeout(200ms, [] { handle(request); });
//
// runs handle() under a deadline 200 ms away. Everything it waits on in weft -- sleeps, yields,
// task and group waits -- ends at the deadline with weft::error(errc::deadline_exceeded), and
// every fiber it spawns (directly or not) is under the same deadline, also after with_timeout
// returned. Nested deadlines: the earliest wins. A deadline is a cancellation with a clock:
// everything README says about cancellation holds, only the error differs.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

#include <weft/detail/time.hpp>

namespace weft {

namespace detail {

struct cancel_scope;

// deadline_guard puts the calling fiber (or plain thread) under min(tp, the deadline in
// force) until it is destroyed. Guards nest on one fiber: destroy them in reverse order.
class deadline_guard {
 public:
  explicit deadline_guard(std::chrono::steady_clock::time_point tp);
  ~deadline_guard();
  deadline_guard(const deadline_guard&) = delete;
  deadline_guard& operator=(const deadline_guard&) = delete;

 private:
  cancel_scope* outer_ = nullptr;
  cancel_scope* inner_ = nullptr;  // nullptr: tp changed nothing (a deadline as early is in force)
};

}  // namespace detail

// with_deadline() calls f(a...) on the calling fiber or plain thread, under the deadline
// min(tp, the deadline in force), and returns its result or lets its exception through.
// Fibers spawned inside inherit the deadline and keep it. Past the deadline, cancellation
// points inside throw weft::error(errc::deadline_exceeded); a deadline already past still
// runs f. Nothing outside f is affected: the caller's own deadline is back on return.
template <class F, class... A>
auto with_deadline(std::chrono::steady_clock::time_point tp, F&& f, A&&... a)
    -> std::invoke_result_t<F, A...> {
  detail::deadline_guard guard(tp);
  return std::invoke(std::forward<F>(f), std::forward<A>(a)...);
}

// with_timeout() is with_deadline(now + d, ...); any duration is fine (it saturates).
template <class Rep, class Period, class F, class... A>
auto with_timeout(std::chrono::duration<Rep, Period> d, F&& f, A&&... a)
    -> std::invoke_result_t<F, A...> {
  return with_deadline(detail::deadline_after(d), std::forward<F>(f), std::forward<A>(a)...);
}

namespace this_fiber {

// deadline() is the deadline in force for the calling fiber or plain thread (the earliest
// of the enclosing with_deadline calls, here and in the fibers that spawned this one);
// nullopt when there is none.
std::optional<std::chrono::steady_clock::time_point> deadline() noexcept;

}  // namespace this_fiber
}  // namespace weft
