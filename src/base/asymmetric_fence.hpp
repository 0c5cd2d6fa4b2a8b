// asymmetric_fence.hpp: a Dekker handshake whose one side is hot and the other rare.
//
// Introspection must know that a fiber it reads is not running, and a worker must know that
// the fiber it is about to resume is not being read. Both sides store, then load what the
// other stored: that needs a full fence on each side, which on the worker's side would cost
// every context switch a locked instruction. Instead the worker pays only a compiler barrier
// (light()) and the rare side makes every thread of the process execute a full barrier
// (heavy(): the membarrier system call, which interrupts the CPUs running our threads). Where
// the kernel lacks membarrier, light() is a real fence.
#pragma once

#include <atomic>

namespace weft::detail::asymmetric_fence {

// available is true when heavy() is cheap for the light side; decided by init().
extern std::atomic<bool> available;

// init() registers the process for membarrier; call before the first light().
void init() noexcept;

inline void light() noexcept {
  if (available.load(std::memory_order_relaxed)) [[likely]] {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

// heavy() orders the caller's earlier stores before every other thread's later loads, and
// their earlier stores before the caller's later loads. False if it could not (then nothing
// may be concluded from the handshake).
bool heavy() noexcept;

}  // namespace weft::detail::asymmetric_fence
