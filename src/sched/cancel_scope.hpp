// cancel_scope.hpp: inherited, cooperative cancellation.
//
// Every fiber carries a pointer to a scope (nullptr: never cancelled), inherited on spawn
// like the context. A task_group makes a child scope of its creator's; cancelling a scope
// marks it and all its descendants at once (so the check is one load) and wakes the fibers
// parked in them.
//
// A deadline (with_deadline) is a scope too, whose cancellation is the clock: each scope
// carries the earliest deadline of itself and its ancestors, fixed when it is made. The scope
// registers no timer: a cancellation point compares the clock with it, and a fiber (or
// thread) that waits cancellably waits no longer than it -- the wait's own timeout (a
// fiber's, in its worker's park_timers) wakes it. The error says which cause came first: the
// deadline, or the cancellation request (whose time the scope records).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <limits>

#include <weft/detail/assert.hpp>
#include <weft/detail/spinlock.hpp>
#include <weft/error.hpp>

namespace weft::detail {

class fiber_record;

// A point in time as steady_clock ticks; `never` is no deadline, no request.
using ticks = std::chrono::steady_clock::rep;
inline constexpr ticks never = std::numeric_limits<ticks>::max();

inline ticks now_ticks() noexcept {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

struct cancel_scope {
  std::atomic<unsigned> refs{1};
  std::atomic<ticks> requested_at{never};  // when cancellation was requested
  ticks deadline = never;                  // the earliest deadline in force (immutable)
  cancel_scope* parent = nullptr;          // retained
  spinlock lock;                           // guards the lists below
  fiber_record* fibers = nullptr;          // running fibers whose scope is this one
  cancel_scope* children = nullptr;
  cancel_scope* sibling_prev = nullptr;
  cancel_scope* sibling_next = nullptr;
  cancel_scope* pending_next = nullptr;  // request_cancel()'s work list (its claimant's only)
};

// make_scope() is a new scope below parent (nullptr: a root), cancelled if parent is, with
// the deadline min(deadline, parent's).
cancel_scope* make_scope(cancel_scope* parent, ticks deadline = never);
inline cancel_scope* retain(cancel_scope* s) noexcept {
  if (s) {
    [[maybe_unused]] const unsigned before = s->refs.fetch_add(1, std::memory_order_relaxed);
    WEFT_ASSERT(before != 0, "a cancellation scope retained after its last release");
  }
  return s;
}
void release(cancel_scope* s) noexcept;

// request_cancel() cancels s and its descendants and wakes their parked fibers. Iterative,
// holding one scope's lock at a time: any depth of nesting is fine on any stack.
void request_cancel(cancel_scope* s) noexcept;

// enter() / leave() register a running fiber with its scope, so cancellation can wake it.
void enter(cancel_scope* s, fiber_record* f) noexcept;
void leave(cancel_scope* s, fiber_record* f) noexcept;

// is_cancelled() is true once s was cancelled or its deadline passed. One load, and a clock
// read only under a deadline.
inline bool is_cancelled(const cancel_scope* s) noexcept {
  if (s == nullptr) return false;
  if (s->requested_at.load(std::memory_order_acquire) != never) return true;
  return s->deadline != never && now_ticks() >= s->deadline;
}

// deadline_of() is the deadline in force in s as a time point (max: none).
inline std::chrono::steady_clock::time_point deadline_of(const cancel_scope* s) noexcept {
  using tp = std::chrono::steady_clock::time_point;
  return s == nullptr || s->deadline == never ? tp::max() : tp(tp::duration(s->deadline));
}

// wait_limit() is how long a cancellable wait in s until *until (nullptr: no end) may last:
// no longer than s's deadline. The result points at until or at storage.
inline const std::chrono::steady_clock::time_point* wait_limit(
    const std::chrono::steady_clock::time_point* until, const cancel_scope* s,
    std::chrono::steady_clock::time_point& storage) noexcept {
  if (s == nullptr || s->deadline == never) return until;
  storage = deadline_of(s);
  if (until != nullptr && *until < storage) storage = *until;
  return &storage;
}

// error_code_of() is the errc of e when it is a weft::error, else errc{} (0: not one).
errc error_code_of(const std::exception_ptr& e) noexcept;

// is_cancellation() is true when e is what throw_cancelled() raises: a weft::error with
// errc::cancelled or errc::deadline_exceeded.
inline bool is_cancellation(const std::exception_ptr& e) noexcept {
  const errc code = error_code_of(e);
  return code == errc::cancelled || code == errc::deadline_exceeded;
}

// throw_cancelled() throws what a cancellation point raises in the cancelled scope s:
// weft::error(deadline_exceeded) if its deadline came before any cancellation request,
// weft::error(cancelled) otherwise.
[[noreturn]] void throw_cancelled(const cancel_scope* s);

}  // namespace weft::detail
