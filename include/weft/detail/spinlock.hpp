// weft/detail/spinlock.hpp: a small lock for critical sections of a few instructions that
// must be usable from fibers and plain threads alike (it never suspends a fiber).
#pragma once

#include <atomic>
#include <thread>

namespace weft::detail {

inline void spin_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// backoff() is one step of a wait for another thread to finish a few instructions: pause,
// and give the core away now and then in case that thread was preempted.
inline void backoff(unsigned& spins) noexcept {
  if (++spins % 64 == 0) {
    std::this_thread::yield();
  } else {
    spin_pause();
  }
}

class spinlock {
 public:
  void lock() noexcept {
    for (unsigned spins = 0;; ++spins) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) {
        // The holder may have been preempted: after a short spin give the core away.
        if (++spins > 64) {
          std::this_thread::yield();
        } else {
          spin_pause();
        }
      }
    }
  }
  bool try_lock() noexcept { return !locked_.exchange(true, std::memory_order_acquire); }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

}  // namespace weft::detail
