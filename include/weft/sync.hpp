// weft/sync.hpp: mutex, condition_variable and semaphore for fibers (and plain threads).
// A wait suspends only the calling fiber; condition-variable and semaphore waits are
// cancellation points that never lose a notification or a permit (docs/sync.md).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include <weft/detail/spinlock.hpp>
#include <weft/detail/time.hpp>
#include <weft/detail/wait.hpp>

namespace weft {

// mutex is owned by a fiber, not a thread: a fiber may hold it across waits, move to another
// worker meanwhile and unlock it there. Lockable and TimedLockable (std::unique_lock,
// std::scoped_lock, std::lock_guard work). Not recursive. lock() is not a cancellation point
// (like std::mutex and Go's sync.Mutex): a cancelled fiber still gets the lock.
//
// Waiters are queued first come first served; an unlock wakes the longest waiting one, which
// then competes with fibers that arrive meanwhile -- unless it has waited over a millisecond,
// in which case the lock is handed to it directly (Go's starvation mode).
class mutex {
 public:
  mutex() noexcept = default;
  // mutex(name): the name shows in executor::dump() ("mutex accounts: lock").
  explicit mutex(std::string name) : name_(std::move(name)) {}
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;
  ~mutex();

  // lock() waits until the caller holds the mutex; it suspends a fiber, blocks a thread.
  void lock() {
    if (!try_lock()) lock_slow(nullptr);
  }
  // try_lock() takes the mutex if it is free now; never waits.
  bool try_lock() noexcept;
  // try_lock_for() / try_lock_until() wait at most that long; false at the timeout.
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> d) {
    if (try_lock()) return true;
    const auto until = detail::deadline_after(d);
    return lock_slow(&until);
  }
  template <class Clock, class Dur>
  bool try_lock_until(std::chrono::time_point<Clock, Dur> tp) {
    if (try_lock()) return true;
    const auto until = detail::deadline_at(tp);
    return lock_slow(&until);
  }
  // unlock() releases the mutex; only its holder may (else errc::invalid_argument, also for a
  // mutex nobody holds).
  void unlock();

  const std::string& name() const noexcept { return name_; }

 private:
  static constexpr unsigned kLocked = 1;   // state_: somebody holds it
  static constexpr unsigned kWaiters = 2;  // state_: waiters_ is not empty
  // state_: a waiter was woken to compete and has not tried yet; unlock() wakes no other
  // meanwhile (Go's mutexWoken). Woken on every unlock, 100 contending fibers spent their
  // time waking, switching to and re-queueing waiters that lost again (3x Go's time).
  static constexpr unsigned kWoken = 4;
  bool lock_slow(const std::chrono::steady_clock::time_point* until);

  std::atomic<unsigned> state_{0};
  // caller_identity() of the holder, in two words; read by a non-holder's unlock() only to
  // refuse it, so relaxed suffices.
  std::atomic<const void*> owner_{nullptr};
  std::atomic<std::uint64_t> owner_serial_{0};
  detail::spinlock lock_;  // guards waiters_; kWaiters and kWoken are set under it
  detail::wait_list waiters_;
  std::string name_;
};

// condition_variable works with std::unique_lock<weft::mutex>. notify_one() / notify_all()
// may be called from anywhere: fibers, plain threads, Asio handlers, offload threads.
//
// Waits are cancellation points: cancelled or past its deadline, a wait throws
// errc::cancelled / deadline_exceeded with the lock held again. A notification never gets lost
// in that race: if the waiter gave up first, notify_one() wakes the next waiter instead; if the
// notification came first, the wait returns normally.
class condition_variable {
 public:
  condition_variable() noexcept = default;
  explicit condition_variable(std::string name) : name_(std::move(name)) {}
  condition_variable(const condition_variable&) = delete;
  condition_variable& operator=(const condition_variable&) = delete;
  ~condition_variable();

  // notify_one() wakes the longest waiting waiter, if any; notify_all() wakes them all.
  void notify_one() noexcept;
  void notify_all() noexcept;

  // wait() unlocks lk, waits for a notification, and locks lk again. Spurious wake-ups are
  // rare but allowed: use the predicate forms.
  void wait(std::unique_lock<mutex>& lk) { wait_impl(lk, nullptr); }
  template <class Pred>
  void wait(std::unique_lock<mutex>& lk, Pred pred) {
    while (!pred())
      wait_impl(lk, nullptr);
  }
  // wait_for() / wait_until() return pred() once their own timeout passed (false: it still
  // does not hold); a deadline in force that comes first throws deadline_exceeded instead.
  template <class Rep, class Period, class Pred>
  bool wait_for(std::unique_lock<mutex>& lk, std::chrono::duration<Rep, Period> d, Pred pred) {
    const auto until = detail::deadline_after(d);
    while (!pred()) {
      if (!wait_impl(lk, &until)) return pred();
    }
    return true;
  }
  template <class Clock, class Dur, class Pred>
  bool wait_until(std::unique_lock<mutex>& lk, std::chrono::time_point<Clock, Dur> tp, Pred pred) {
    const auto until = detail::deadline_at(tp);
    while (!pred()) {
      if (!wait_impl(lk, &until)) return pred();
    }
    return true;
  }

  const std::string& name() const noexcept { return name_; }

 private:
  // wait_impl() is one wait: false at the timeout.
  bool wait_impl(std::unique_lock<mutex>& lk, const std::chrono::steady_clock::time_point* until);

  detail::spinlock lock_;  // guards waiters_
  detail::wait_list waiters_;
  std::string name_;
};

// semaphore is a counting semaphore. Permits go to waiters in the order they started waiting.
// acquire() and try_acquire_for() are cancellation points: a permit is either taken by the
// waiter or, if it gave up first, left for the next one -- never lost.
class semaphore {
 public:
  // semaphore(initial): initial < 0 -> errc::invalid_argument.
  explicit semaphore(std::ptrdiff_t initial, std::string name = {});
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;
  ~semaphore();

  // acquire() takes a permit, waiting while there is none.
  void acquire() { acquire_until(nullptr); }
  // try_acquire() takes a permit if one is free now; never waits.
  bool try_acquire() noexcept;
  // try_acquire_for() waits at most d; false at its timeout.
  template <class Rep, class Period>
  bool try_acquire_for(std::chrono::duration<Rep, Period> d) {
    const auto until = detail::deadline_after(d);
    return acquire_until(&until);
  }
  template <class Clock, class Dur>
  bool try_acquire_until(std::chrono::time_point<Clock, Dur> tp) {
    const auto until = detail::deadline_at(tp);
    return acquire_until(&until);
  }
  // release() adds n permits (n < 1, or a count past PTRDIFF_MAX -> errc::invalid_argument),
  // handing them to waiters first.
  void release(std::ptrdiff_t n = 1);

  // available() is the number of free permits now.
  std::ptrdiff_t available() const noexcept;
  const std::string& name() const noexcept { return name_; }

 private:
  bool acquire_until(const std::chrono::steady_clock::time_point* until);

  mutable detail::spinlock lock_;  // guards the two below
  detail::wait_list waiters_;
  std::ptrdiff_t count_;
  std::string name_;
};

}  // namespace weft
