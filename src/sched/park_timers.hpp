// park_timers.hpp: the deadlines of the fibers parked on one worker.
//
// A fiber that parks with a deadline (a wait under with_deadline, sleep_for, wait_for) is
// detached from its worker like any parked fiber, so that whoever wakes it can run it
// (fiber_record::park); only its deadline stays behind, here, in the worker it parked on.
// That worker fires the expired ones on its dispatcher passes and sleeps no longer than the
// earliest; another worker fires them when this one is stalled, and so does the
// pool's watcher (the sleeping worker that sleeps no longer than every worker's earliest
// deadline, pool.hpp). The set is intrusive (the
// hook is in the fiber's record, at the top of its stack): a parked fiber costs no memory
// beyond its stack page.
#pragma once

#include <atomic>
#include <chrono>

#include <boost/intrusive/set.hpp>

#include <weft/detail/spinlock.hpp>

#include "sched/fiber_record.hpp"

namespace weft::detail {

class park_timers {
 public:
  park_timers() = default;
  park_timers(const park_timers&) = delete;
  park_timers& operator=(const park_timers&) = delete;

  // add() files f's deadline here (f.timer_home = this); f must not be filed anywhere. True
  // if it is now the earliest filed here (the pool's watcher may have to know).
  bool add(fiber_record& f, clock::time_point deadline) noexcept;
  // remove() takes f's deadline out, unless it fired already. Called by f, back on a worker.
  void remove(fiber_record& f) noexcept;
  // fire() wakes every fiber whose deadline is at or before now.
  void fire(clock::time_point now) noexcept;
  // earliest() is the first deadline filed (time_point::max() if none); any thread.
  clock::time_point earliest() const noexcept {
    return clock::time_point(clock::duration(earliest_.load(std::memory_order_acquire)));
  }

 private:
  struct by_deadline {
    bool operator()(const fiber_record& a, const fiber_record& b) const noexcept {
      return a.timer_deadline < b.timer_deadline;
    }
  };
  using set_type = boost::intrusive::multiset<
      fiber_record,
      boost::intrusive::member_hook<fiber_record, fiber_record::timer_hook_type,
                                    &fiber_record::timer_hook>,
      boost::intrusive::compare<by_deadline>>;

  void publish_earliest() noexcept;  // with lock_ held

  spinlock lock_;
  set_type set_;
  std::atomic<clock::rep> earliest_{clock::time_point::max().time_since_epoch().count()};
};

}  // namespace weft::detail
