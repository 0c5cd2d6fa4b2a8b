// park_timers.cpp: see park_timers.hpp.
#include "sched/park_timers.hpp"

#include <mutex>

namespace weft::detail {

bool park_timers::add(fiber_record& f, clock::time_point deadline) noexcept {
  f.timer_deadline = deadline;
  f.timer_home = this;
  std::lock_guard<spinlock> g(lock_);
  set_.insert(f);
  const bool first = &*set_.begin() == &f;
  if (first) publish_earliest();
  return first;
}

void park_timers::remove(fiber_record& f) noexcept {
  std::lock_guard<spinlock> g(lock_);
  if (!f.timer_hook.is_linked()) return;  // fired
  set_.erase(set_.iterator_to(f));
  publish_earliest();
}

void park_timers::fire(clock::time_point now) noexcept {
  std::lock_guard<spinlock> g(lock_);
  while (!set_.empty() && set_.begin()->timer_deadline <= now) {
    fiber_record& f = *set_.begin();
    set_.erase(set_.begin());
    // Under the lock: the fiber cannot leave its park (remove() waits for the lock), so its
    // record is still there while it is woken.
    f.wake();
  }
  publish_earliest();
}

void park_timers::publish_earliest() noexcept {
  const clock::time_point e =
      set_.empty() ? clock::time_point::max() : set_.begin()->timer_deadline;
  earliest_.store(e.time_since_epoch().count(), std::memory_order_release);
}

}  // namespace weft::detail
