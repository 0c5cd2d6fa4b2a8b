// fiber_record.hpp: what the pool keeps for each of its fibers, and how a fiber blocks.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include <boost/fiber/properties.hpp>
#include <boost/intrusive/set_hook.hpp>

#include <weft/detail/assert.hpp>
#include <weft/detail/fiber_state.hpp>
#include <weft/detail/job.hpp>
#include <weft/detail/spinlock.hpp>
#include <weft/detail/wait.hpp>

namespace weft::detail {

class algorithm;
class park_timers;
struct worker_slot;

using clock = std::chrono::steady_clock;

// waiter is a fiber or thread blocked until something it waits for happens. The thing
// waited for keeps a list of waiters under its own lock and wake()s them all.
struct waiter {
  waiter* next = nullptr;
  bool linked = false;
  virtual void wake() noexcept = 0;
  // wake_releasing() is wake(), then done = true once the waker no longer touches the
  // waiter (a channel's hand-over: the waiter leaves only then).
  virtual void wake_releasing(std::atomic<bool>& done) noexcept {
    wake();
    done.store(true, std::memory_order_release);
  }

 protected:
  ~waiter() = default;
};

// eh_state is the C++ runtime's per-thread exception bookkeeping (Itanium ABI
// __cxa_eh_globals). It is saved and restored on every fiber switch, so a fiber may suspend
// inside a catch block or in a destructor run by unwinding, even if it resumes elsewhere.
struct eh_state {
  void* caught = nullptr;
  unsigned int uncaught = 0;
};
// switch_eh() saves the thread's state into `out` and installs `in`; `globals` is the
// thread's __cxa_get_globals().
void switch_eh(eh_state& out, const eh_state& in, void* globals) noexcept;

// fiber_slot is the top 64 bytes of every fiber stack: who uses the stack now, in words that
// introspection (executor::fibers()) reads at any time from any thread. Unlike the record
// below it, it outlives its fiber: a stack stays mapped until its executor goes, and one
// whose pages were given back reads as zeros, which says "free". Its words are only ever
// accessed through std::atomic_ref (the memory comes from mmap, no object is constructed).
struct alignas(64) fiber_slot {
  enum state_t : std::uint32_t { free = 0, ready, running, suspended };
  std::uint32_t state;  // written by whoever moves the fiber: its worker, or awakened()
  std::uint64_t id;     // of the fiber using the stack; 0 while the three are rewritten
  std::uint64_t parent;
  std::int64_t born;  // CLOCK_MONOTONIC_COARSE, nanoseconds

  void set_state(state_t s) noexcept {
    std::atomic_ref<std::uint32_t>(state).store(s, std::memory_order_release);
  }
  state_t get_state() noexcept {
    return static_cast<state_t>(
        std::atomic_ref<std::uint32_t>(state).load(std::memory_order_acquire));
  }

  // The identity is a sequence lock keyed by the id (ids are never reused): a reader that
  // sees the same non-zero id before and after reading the rest read one fiber's identity.
  struct identity {
    std::uint64_t id, parent;
    std::int64_t born;
  };
  void publish(const identity& who) noexcept {
    std::atomic_ref<std::uint64_t>(id).store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    std::atomic_ref<std::uint64_t>(parent).store(who.parent, std::memory_order_relaxed);
    std::atomic_ref<std::int64_t>(born).store(who.born, std::memory_order_relaxed);
    std::atomic_ref<std::uint64_t>(id).store(who.id, std::memory_order_release);
  }
  // own_id() is the id, read by the slot's own fiber (nobody rewrites it while it lives).
  std::uint64_t own_id() noexcept {
    return std::atomic_ref<std::uint64_t>(id).load(std::memory_order_relaxed);
  }
  // read() is false while the identity is being rewritten or the slot was never used.
  bool read(identity& who) noexcept {
    who.id = std::atomic_ref<std::uint64_t>(id).load(std::memory_order_acquire);
    who.parent = std::atomic_ref<std::uint64_t>(parent).load(std::memory_order_relaxed);
    who.born = std::atomic_ref<std::int64_t>(born).load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    return who.id != 0 &&
           std::atomic_ref<std::uint64_t>(id).load(std::memory_order_relaxed) == who.id;
  }
};

// coarse_now() is CLOCK_MONOTONIC_COARSE in nanoseconds: a fiber's birth time, cheap enough
// for every spawn (3.8 ns a read here; CLOCK_MONOTONIC takes 26 ns).
std::int64_t coarse_now() noexcept;

// fiber_record is the record of one pool fiber. It lives at the top of the fiber's own
// stack (no allocation of its own); Boost.Fiber holds it as the fiber's properties and
// destroys it with the fiber's context, just before the stack goes back to the pool. The
// scheduler finds it through context::get_properties() on every switch.
class fiber_record final : public boost::fibers::fiber_properties,
                           public fiber_state,
                           public waiter {
 public:
  fiber_record(pool& owner, job* work, fiber_slot& slot) noexcept;
  ~fiber_record() override;

  // The memory is part of the fiber's stack: Boost's `delete` must only run the destructor.
  static void operator delete(void*) noexcept {}

  // main() is the body of the fiber: run the job, end the fiber, tell the pool.
  void main() noexcept;

  // report_unhandled() hands e to the executor's on_unhandled_exception.
  void report_unhandled(std::exception_ptr e) noexcept override;

  // wake() ends a park(); callable from any thread.
  void wake() noexcept override;
  // wake_releasing() sets done before it queues the fiber: a parked fiber cannot run, and so
  // cannot leave its wait, until it is queued -- its waiter need not spin for a waker that is
  // still busy waking a sleeping worker.
  void wake_releasing(std::atomic<bool>& done) noexcept override;

  // note_on_cpu() / note_off_cpu() check that a fiber runs on one worker at a time.
#if defined(WEFT_CHECKS)
  void note_on_cpu() noexcept {
    WEFT_ASSERT(!on_cpu_.exchange(true, std::memory_order_acq_rel),
                "a fiber resumed on two workers at once");
  }
  void note_off_cpu() noexcept {
    on_cpu_.store(false, std::memory_order_release);
  }
  // note_queued() / note_dequeued() check that a fiber sits in one ready queue at most once.
  void note_queued() noexcept {
    WEFT_ASSERT(!queued_.exchange(true, std::memory_order_acq_rel),
                "a fiber queued as ready while it is queued already");
  }
  void note_dequeued() noexcept {
    WEFT_ASSERT(queued_.exchange(false, std::memory_order_acq_rel),
                "a fiber taken from a ready queue it was not in");
  }
#else
  void note_on_cpu() noexcept {}
  void note_off_cpu() noexcept {}
  void note_queued() noexcept {}
  void note_dequeued() noexcept {}
#endif

  // park() suspends this fiber (the caller must be it) until wake(), the deadline, or -- if
  // cancellable -- a cancellation request. Spurious returns are possible: callers loop.
  //
  // A parked fiber is owned by no worker: the worker it parked on detaches it from its Boost
  // scheduler once it is off-CPU (settle()), and wake() queues it on the waking worker
  // itself -- the one that ran the I/O completion, the fiber that finished, the one that
  // fired its deadline -- instead of sending it back to the worker it parked on through
  // Boost's remote queue. That hop cost a thread wake-up, and a fiber woken for a worker that
  // had lost its CPU to another thread waited for it (echo p99, docs/io.md). A deadline is
  // filed in the park_timers of the worker it parked on.
  void park(const clock::time_point* deadline, bool cancellable);

  // settle() is run by the worker this fiber parked on, after the switch away from it: the
  // fiber is detached, then left parked or -- woken meanwhile -- queued on `here`.
  void settle(algorithm& here) noexcept;

  boost::fibers::context* boost_context() const noexcept {
    return ctx_;
  }

  pool& owner;
  job* work;
  fiber_slot& slot;  // just above the record, at the top of the stack; its id is the fiber's

  // What the fiber waits for while it parks (introspection): set by the waiting code, which
  // keeps the label alive in its frame until the wait is over; nullptr when not waiting.
  const wait_label* waiting_on = nullptr;
  bool yielding = false;       // this_fiber::yield(): queue behind the others, not in front
  bool queued_behind = false;  // in a ready queue's bottom part (worker_slot::waiting_behind)
  bool ending = false;         // main() returns next: the sanitizer may free its fake stack
  eh_state eh;
  void* fake_stack = nullptr;          // the sanitizer's fake stack while the fiber is off-CPU
  const void* stack_bottom = nullptr;  // for sanitizer annotations
  std::size_t stack_size = 0;
  void* tsan_fiber = nullptr;          // ThreadSanitizer's state of the fiber (tsan.hpp)
  fiber_record* scope_prev = nullptr;  // links among the fibers of the same cancel_scope
  fiber_record* scope_next = nullptr;

  // While it parks with a deadline: its place in timer_home (park_timers).
  using timer_hook_type = boost::intrusive::set_member_hook<>;
  timer_hook_type timer_hook;
  clock::time_point timer_deadline;
  park_timers* timer_home = nullptr;

 private:
  // note_waker() records the calling worker as waker_ if a fiber of the pool running there
  // wakes this one before it parked.
  void note_waker() noexcept;
  // woken_early() is park() for a fiber woken before it could park: if a fiber on another
  // worker woke it, it suspends and resumes there, to run next.
  void woken_early() noexcept;
  // wake_and_release() is wake(), and sets *done (if given) as wake_releasing() says.
  void wake_and_release(std::atomic<bool>* done) noexcept;
  // requeue() makes a fiber woken from parked ready on a worker of its pool.
  // done, if given, is set once nothing of this record is touched any more.
  void requeue(std::atomic<bool>* done = nullptr) noexcept;

  // The park state, one atomic word: a wake-up and the park it ends race with one
  // compare-and-swap each, not under a lock (a hand-over between two fibers took that lock
  // four times; its locked instructions were most of the hand-over's cost).
  //   running  on a worker, or queued after a wake-up
  //   parking  suspending: off-CPU soon, not yet settle()d by its worker
  //   parked   detached, in no queue: the wake() that moves it to running queues it
  //   woken    (with running or parking) a wake-up came before it parked: park() returns
  //            at once, settle() queues it
  static constexpr std::uint8_t running = 0, parking = 1, parked = 2, state_mask = 3, woken = 4;
  std::atomic<std::uint8_t> park_state_{running};
  // The worker it parked on: woken from outside, it goes there. Written by settle() before
  // the state becomes parked, read by the wake() that takes it out of parked.
  worker_slot* home_ = nullptr;
  // A worker whose running fiber woke it before it parked, or while it was still parking:
  // settle() queues it there (to run next) rather than where it parked, so two fibers that
  // wake each other faster than their workers settle them still end up on one worker. Written
  // by every wake-up that marks woken (nullptr if no fiber of this pool woke it), before its
  // compare-and-swap; read by woken_early(), taken by settle().
  std::atomic<worker_slot*> waker_{nullptr};
#if defined(WEFT_CHECKS)
  std::atomic<bool> on_cpu_{false};
  std::atomic<bool> queued_{false};
#endif
};

// A fiber's record sits right below its slot, both at the top of its stack, and below them
// room for its job (job::settle()). park()'s frame of an idle fiber sits ~1.6 KB below the
// top (measured), so the three stay within the one page such a fiber keeps resident.
inline constexpr std::size_t record_bytes = (sizeof(fiber_record) + 63) / 64 * 64;
inline constexpr std::size_t job_room_bytes = 128;
inline constexpr std::size_t reserved_bytes = record_bytes + job_room_bytes + sizeof(fiber_slot);
inline fiber_record* record_below(fiber_slot* s) noexcept {
  return reinterpret_cast<fiber_record*>(reinterpret_cast<char*>(s) - record_bytes);
}
inline void* job_room_below(fiber_slot* s) noexcept {
  return reinterpret_cast<char*>(s) - record_bytes - job_room_bytes;
}

// current_record() is the calling pool fiber's record, or nullptr on a plain thread.
inline fiber_record* current_record() noexcept {
  fiber_state* f = tl_fiber;
  return (f != nullptr && f->is_pool_fiber) ? static_cast<fiber_record*>(f) : nullptr;
}

}  // namespace weft::detail
