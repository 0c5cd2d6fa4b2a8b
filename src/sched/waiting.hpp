// waiting.hpp: blocking a fiber or a plain thread until a condition holds.
//
// The object waited for (a task, a task group) guards its state and a list of waiters with
// one spinlock; whoever changes the state wakes the list while holding that lock, and a
// waiter unlinks itself under the same lock before it returns, so a wake never touches a
// waiter that is gone. A pool fiber parks (suspends; the worker runs other fibers), a plain
// thread blocks on a condition variable.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <type_traits>
#include <utility>

#include <weft/detail/spinlock.hpp>

#include "sched/cancel_scope.hpp"
#include "sched/fiber_record.hpp"

namespace weft::detail {

// thread_waiter is a plain thread blocked in block(). It spins up to 20 microseconds before
// it sleeps: a short task handed to a pool often finishes within that, and then neither side
// pays for a futex wake-up (measured here: a plain thread's run() of an empty task on a
// 1-worker pool took 63 us with an immediate sleep, about 1 us with the spin).
struct thread_waiter final : waiter {
  std::mutex mutex;
  std::condition_variable cv;
  std::atomic<bool> woken{false};

  void wake() noexcept override {
    std::lock_guard<std::mutex> g(mutex);
    woken.store(true, std::memory_order_release);
    cv.notify_all();
  }

  // park() sleeps until wake() or the deadline (or, cancellable, the scope's deadline).
  void park(const clock::time_point* deadline, const cancel_scope* scope) {
    clock::time_point limit;
    deadline = wait_limit(deadline, scope, limit);
    const auto spin_until = clock::now() + std::chrono::microseconds(20);
    for (unsigned spin = 1; !woken.load(std::memory_order_acquire); ++spin) {
      spin_pause();
      if (spin % 64 == 0 && clock::now() >= spin_until) break;
    }
    std::unique_lock<std::mutex> lk(mutex);
    auto is_woken = [this] { return woken.load(std::memory_order_relaxed); };
    if (deadline) {
      cv.wait_until(lk, *deadline, is_woken);
    } else {
      cv.wait(lk, is_woken);
    }
    woken.store(false, std::memory_order_relaxed);
  }
};

// wait_mark says what the calling pool fiber waits for while it exists (fiber_info::waiting_on);
// on a plain thread it does nothing. The label must outlive it.
class wait_mark {
 public:
#if defined(WEFT_NO_WAIT_LABELS)  // -Dwait_labels=false: only to measure what the mark costs
  explicit wait_mark(const wait_label&) noexcept {}
#else
  explicit wait_mark(const wait_label& l) noexcept : self_(current_record()) {
    if (self_ != nullptr) previous_ = std::exchange(self_->waiting_on, &l);
  }
  ~wait_mark() {
    if (self_ != nullptr) self_->waiting_on = previous_;
  }
#endif
  wait_mark(const wait_mark&) = delete;
  wait_mark& operator=(const wait_mark&) = delete;

 private:
  fiber_record* self_ = nullptr;
  const wait_label* previous_ = nullptr;
};

inline void link(waiter*& list, waiter* w) noexcept {
  if (w->linked) return;
  w->next = list;
  list = w;
  w->linked = true;
}

inline void unlink(waiter*& list, waiter* w) noexcept {
  if (!w->linked) return;
  for (waiter** p = &list; *p != nullptr; p = &(*p)->next) {
    if (*p == w) {
      *p = w->next;
      break;
    }
  }
  w->linked = false;
}

// wake_all() wakes and unlinks every waiter; call it with the guarding lock held.
inline void wake_all(waiter*& list) noexcept {
  for (waiter* w = list; w != nullptr;) {
    waiter* next = w->next;
    w->linked = false;
    w->wake();
    w = next;
  }
  list = nullptr;
}

// block_as() waits as `w`: a fiber's own record, or a plain thread's stack waiter. scope is
// the cancellation honoured (nullptr: none): a fiber's is registered and woken on a request;
// a plain thread's can only be a deadline's (with_deadline), which its timed wait honours.
template <class Ready, class Waiter>
bool block_as(Waiter* w, spinlock& lock, waiter*& list, Ready& ready,
              const clock::time_point* deadline, const cancel_scope* scope) {
  for (;;) {
    bool cancelled = false;
    {
      std::lock_guard<spinlock> g(lock);
      if (ready()) {
        unlink(list, w);
        return true;
      }
      cancelled = is_cancelled(scope);
      if (cancelled || (deadline && clock::now() >= *deadline)) {
        unlink(list, w);
        if (!cancelled) return false;
      } else {
        link(list, w);
      }
    }
    if (cancelled) throw_cancelled(scope);
    if constexpr (std::is_same_v<Waiter, fiber_record>) {
      w->park(deadline, scope != nullptr);
    } else {
      w->park(deadline, scope);
    }
  }
}

// block() returns true once ready() holds (evaluated under lock), false if the deadline
// passed first. With cancellable set it is a cancellation point: it throws
// weft::error(cancelled or deadline_exceeded) when the caller's cancellation is requested or
// its deadline passes before ready() holds.
template <class Ready>
bool block(spinlock& lock, waiter*& list, Ready ready, const clock::time_point* deadline,
           bool cancellable) {
  if (fiber_record* self = current_record()) {
    return block_as(self, lock, list, ready, deadline, cancellable ? self->scope : nullptr);
  }
  const fiber_state* thread = tl_fiber;
  thread_waiter thread_self;
  return block_as(&thread_self, lock, list, ready, deadline,
                  cancellable && thread != nullptr ? thread->scope : nullptr);
}

}  // namespace weft::detail
