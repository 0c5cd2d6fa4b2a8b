// cancel_scope.hpp: inherited, cooperative cancellation.
//
// Every fiber carries a pointer to a scope (nullptr: never cancelled), inherited on spawn
// like the context. A task_group makes a child scope of its creator's; cancelling a scope
// marks it and all its descendants at once (so the check is one load) and wakes the fibers
// parked in them.
#pragma once

#include <atomic>

#include <weft/detail/assert.hpp>
#include <weft/detail/spinlock.hpp>

namespace weft::detail {

class fiber_record;

struct cancel_scope {
  std::atomic<unsigned> refs{1};
  std::atomic<bool> requested{false};
  cancel_scope* parent = nullptr;  // retained
  spinlock lock;                   // guards the lists below
  fiber_record* fibers = nullptr;  // running fibers whose scope is this one
  cancel_scope* children = nullptr;
  cancel_scope* sibling_prev = nullptr;
  cancel_scope* sibling_next = nullptr;
  cancel_scope* pending_next = nullptr;  // request_cancel()'s work list (its claimant's only)
};

// make_scope() is a new scope below parent (nullptr: a root), cancelled if parent is.
cancel_scope* make_scope(cancel_scope* parent);
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

inline bool is_cancelled(const cancel_scope* s) noexcept {
  return s != nullptr && s->requested.load(std::memory_order_acquire);
}

[[noreturn]] void throw_cancelled();

}  // namespace weft::detail
