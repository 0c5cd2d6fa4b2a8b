// deadline.cpp: entering and leaving a deadline's cancellation scope.
#include <weft/deadline.hpp>

#include <utility>

#include "sched/cancel_scope.hpp"
#include "sched/fiber_record.hpp"

namespace weft {
namespace detail {

deadline_guard::deadline_guard(std::chrono::steady_clock::time_point tp) {
  fiber_state& self = thread_state();
  outer_ = self.scope;
  const ticks at = tp.time_since_epoch().count();
  // A deadline no earlier than the one in force changes nothing: no scope to make.
  if (outer_ != nullptr && outer_->deadline <= at) return;
  if (at == never) return;
  inner_ = make_scope(outer_, at);
  // A pool fiber is registered with its scope, so a cancellation of the outer scope --
  // which reaches the inner one, its child -- still wakes it when it parks.
  if (fiber_record* rec = current_record()) {
    if (outer_ != nullptr) leave(outer_, rec);
    enter(inner_, rec);
  }
  self.scope = inner_;
}

deadline_guard::~deadline_guard() {
  if (inner_ == nullptr) return;
  fiber_state& self = thread_state();
  WEFT_ASSERT(self.scope == inner_, "deadline guards destroyed out of order");
  if (fiber_record* rec = current_record()) {
    leave(inner_, rec);
    if (outer_ != nullptr) enter(outer_, rec);
  }
  self.scope = outer_;
  release(inner_);  // fibers spawned inside keep it alive as long as they need it
}

}  // namespace detail

namespace this_fiber {

std::optional<std::chrono::steady_clock::time_point> deadline() noexcept {
  const detail::fiber_state* f = detail::tl_fiber;
  if (f == nullptr || f->scope == nullptr || f->scope->deadline == detail::never) {
    return std::nullopt;
  }
  return detail::deadline_of(f->scope);
}

}  // namespace this_fiber
}  // namespace weft
