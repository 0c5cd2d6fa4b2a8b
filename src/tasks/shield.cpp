// shield.cpp: leaving the caller's cancellation scope for a while, and coming back to it.
#include <weft/shield.hpp>

#include <utility>

#include "sched/cancel_scope.hpp"
#include "sched/fiber_record.hpp"

namespace weft::detail {

shield_guard::shield_guard() noexcept {
  // No per-thread record yet means no scope either: nothing to set aside (and no record to
  // allocate, so the guard cannot fail).
  fiber_state* self = tl_fiber;
  if (self == nullptr || self->scope == nullptr) return;
  // The fiber's reference to its scope passes to the guard. A pool fiber also leaves the
  // scope's list, so a cancellation requested meanwhile no longer wakes it; a wake-up that
  // came just before is only a spurious one, which every wait re-checks.
  outer_ = std::exchange(self->scope, nullptr);
  if (fiber_record* rec = current_record()) leave(outer_, rec);
}

shield_guard::~shield_guard() {
  if (outer_ == nullptr) return;
  fiber_state* self = tl_fiber;  // re-read: the fiber may have moved to another worker
  WEFT_ASSERT(self != nullptr && self->scope == nullptr,
              "a shield ended while a deadline opened inside it was still in force");
  // Back in the list before the scope is in force again: a cancellation requested from now
  // on wakes the fiber's next wait, and one requested meanwhile is already in the scope's
  // state, which the next cancellation point reads.
  if (fiber_record* rec = current_record()) enter(outer_, rec);
  self->scope = outer_;
}

}  // namespace weft::detail
