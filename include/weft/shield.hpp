// weft/shield.hpp: work that the caller's cancellation and deadline do not end.
//
//   catch (const weft::error&) {                      // cancelled, or out of time
//     weft::shielded([&] { backend.release(lease); });  // still waits for its reply
//     throw;
//   }
//
// Some waits must finish even after the caller was cancelled: handing back a lease, waiting
// for another thread to let go of the caller's objects, flushing what was written. Inside
// shielded(), no cancellation and no deadline are in force -- it is Trio's shielded cancel
// scope, Kotlin's withContext(NonCancellable), asyncio.shield() for the calling fiber itself.
#pragma once

#include <functional>
#include <type_traits>
#include <utility>

namespace weft {

namespace detail {

struct cancel_scope;

// shield_guard takes the calling fiber (or plain thread) out of its cancellation scope until
// it is destroyed, then puts it back. Guards nest with each other and with deadline guards:
// destroy them in reverse order.
class shield_guard {
 public:
  shield_guard() noexcept;
  ~shield_guard();
  shield_guard(const shield_guard&) = delete;
  shield_guard& operator=(const shield_guard&) = delete;

 private:
  cancel_scope* outer_ = nullptr;  // the scope set aside (its reference is the guard's meanwhile)
};

}  // namespace detail

// shielded() calls f(a...) on the calling fiber or plain thread with no cancellation and no
// deadline in force, and returns its result or lets its exception through.
//
// - Inside, waits (sleeps, yields, task and group waits, channels, select, condition
//   variables, semaphores, use_fiber, offload) are not ended by the caller's cancellation or
//   deadline, whether it came before shielded() was called or while f runs;
//   this_fiber::cancellation_requested() is false and this_fiber::deadline() is nullopt.
// - with_deadline / with_timeout inside f work as anywhere: a deadline set inside does end
//   the waits inside it. Use one when the wait might never end, or the shield keeps the
//   cancelled fiber -- and the group waiting for it -- waiting with it.
// - Fibers spawned inside (weft::spawn, task groups, executor::spawn/post/run) do not inherit
//   the caller's cancellation or deadline, now or later.
// - When f returns or throws, the caller's cancellation and deadline are in force again: a
//   cancellation requested meanwhile, or a deadline passed meanwhile, shows at the caller's
//   next cancellation point.
template <class F, class... A>
auto shielded(F&& f, A&&... a) -> std::invoke_result_t<F, A...> {
  detail::shield_guard guard;
  return std::invoke(std::forward<F>(f), std::forward<A>(a)...);
}

}  // namespace weft
