// weft/offload.hpp: calling blocking code from a fiber without blocking its worker.
//
//   std::string body = weft::offload(read_whole_file, path);   // the worker runs other fibers
//
// A blocking call (a file read, a DNS lookup, a library with its own locks) made directly on a
// pool fiber holds its worker thread and every fiber queued there. offload() hands it to the
// executor's blocking pool instead -- threads started on demand, at most
// executor_options::blocking_threads at once -- and suspends only the calling fiber.
#pragma once

#include <functional>
#include <type_traits>
#include <utility>

#include <weft/context.hpp>
#include <weft/detail/outcome.hpp>
#include <weft/detail/spinlock.hpp>
#include <weft/executor.hpp>

namespace weft {
namespace detail {

struct waiter;
class pool;

// offload_base is one offloaded call, owned by the waiting caller (it lives on its stack).
struct offload_base {
  spinlock lock;  // guards finished and waiters
  bool finished = false;
  waiter* waiters = nullptr;
  offload_base* next = nullptr;  // link in the blocking pool's queue (under its mutex)
  bool queued = false;           // guarded by the blocking pool's mutex
  // The caller's context (an owned reference), which the call runs in and may change (its
  // own copy); taken over by the blocking thread that runs the call.
  node* context = nullptr;
  pool* owner = nullptr;  // the caller's pool, for exceptions nobody can catch

  // invoke() makes the call; the blocking thread then sets finished.
  virtual void invoke() noexcept = 0;

 protected:
  ~offload_base() = default;
};

// offload_from_fiber() is true when the caller is a pool fiber, whose offload() goes to its
// executor's blocking pool, and false on a plain thread, where f runs in place. On a worker
// thread outside a fiber (an Asio handler) it throws weft::error(would_deadlock): waiting
// there would hold the worker, and running f there would block it too.
bool offload_from_fiber();

// run_offloaded() queues call on the calling pool fiber's blocking pool and waits until it
// finished -- or, if the caller is cancelled or out of time before a blocking thread took it,
// takes it back and throws.
void run_offloaded(offload_base& call);

template <class R, class F>
struct offload_call final : offload_base {
  explicit offload_call(F& f) noexcept : fn(f) {}
  void invoke() noexcept override {
    out.capture([this]() -> R { return fn(); });
  }
  R take() {
    if (out.failure) std::rethrow_exception(out.failure);
    return out.result.take();
  }
  F& fn;
  outcome<R> out;
};

}  // namespace detail

// offload() runs f(a...) on a thread of the current executor's blocking pool, in a copy of the
// caller's current context, and returns its result or rethrows its exception. Only the calling
// fiber waits (its worker runs other fibers); f and a are used in place, not copied, since the
// caller waits for the call.
//
// f is never interrupted: a cancellation or deadline that arrives while it runs is seen at the
// caller's next cancellation point after it returned. If one arrives while the call still
// waits for a blocking thread (all busy), the call is withdrawn and offload() throws
// weft::error(cancelled or deadline_exceeded) without running f. f runs outside the caller's
// cancellation: read this_fiber::deadline() before offloading to hand a blocking API its
// timeout. executor::join() and ~executor() wait for offloaded calls, as for the fibers making
// them.
//
// The call is a fiber of its own as far as weft's per-fiber state goes: it starts with fresh
// fiber_local values (never the caller's, never an earlier call's on the same thread), which
// are destroyed when f returns, before offload() does -- then its copy of the context. Inside
// f there is no current executor: weft::spawn refuses, a nested offload() runs in place.
//
// From a plain thread f(a...) runs on the calling thread, as it is. On a worker thread outside
// a fiber -- an Asio handler of io_context(ex) -- offload() throws weft::error(would_deadlock)
// without running f: spawn a fiber there and offload from it.
template <class F, class... A>
auto offload(F&& f, A&&... a) -> std::invoke_result_t<F, A...> {
  using R = std::invoke_result_t<F, A...>;
  if (!detail::offload_from_fiber()) {
    return std::invoke(std::forward<F>(f), std::forward<A>(a)...);
  }
  auto thunk = [&]() -> R { return std::invoke(std::forward<F>(f), std::forward<A>(a)...); };
  detail::offload_call<R, decltype(thunk)> call(thunk);
  detail::run_offloaded(call);
  return call.take();
}

}  // namespace weft
