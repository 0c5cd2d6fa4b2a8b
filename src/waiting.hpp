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

#include <weft/detail/spinlock.hpp>

#include "cancel_scope.hpp"
#include "fiber_record.hpp"

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

  void park(const clock::time_point* deadline) {
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

// block_as() waits as `w`: a fiber's own record, or a plain thread's stack waiter.
template <class Ready, class Waiter>
bool block_as(Waiter* w, spinlock& lock, waiter*& list, Ready& ready,
              const clock::time_point* deadline, bool cancellable) {
  constexpr bool is_fiber = std::is_same_v<Waiter, fiber_record>;
  for (;;) {
    bool cancelled = false;
    {
      std::lock_guard<spinlock> g(lock);
      if (ready()) {
        unlink(list, w);
        return true;
      }
      if constexpr (is_fiber) cancelled = cancellable && is_cancelled(w->scope);
      if (cancelled || (deadline && clock::now() >= *deadline)) {
        unlink(list, w);
        if (!cancelled) return false;
      } else {
        link(list, w);
      }
    }
    if (cancelled) throw_cancelled();
    if constexpr (is_fiber) {
      w->park(deadline, cancellable);
    } else {
      w->park(deadline);
    }
  }
}

// block() returns true once ready() holds (evaluated under lock), false if the deadline
// passed first. On a pool fiber with cancellable set it is a cancellation point: it throws
// weft::error(cancelled) when the fiber's cancellation is requested before ready() holds.
template <class Ready>
bool block(spinlock& lock, waiter*& list, Ready ready, const clock::time_point* deadline,
           bool cancellable) {
  if (fiber_record* self = current_record()) {
    return block_as(self, lock, list, ready, deadline, cancellable);
  }
  thread_waiter thread_self;
  return block_as(&thread_self, lock, list, ready, deadline, cancellable);
}

}  // namespace weft::detail
