// scheduler.hpp: weft's per-executor Boost.Fiber scheduling algorithm.
//
// Each worker thread has a ready deque. The owner pushes and pops at the top (newest first:
// a fiber's children run while its stack is still hot, and a spawn tree is explored depth
// first, so few of its fibers are alive at once); thieves take from the bottom (oldest
// first, the biggest pieces of work). Fibers that should wait their turn go to the bottom,
// "behind": yielding ones, those woken by an I/O completion (first come, first served) and
// those woken from outside the pool. The pinned main and dispatcher contexts are kept out of
// the deque (they must never be stolen). Idle workers spin briefly, then sleep on a condition
// variable -- or, when the executor has an io_context, one of them blocks in it instead (see
// reactor in pool.hpp); a worker that queues stealable work wakes one sleeper.
//
// A parked fiber belongs to no worker (fiber_record::park): whoever wakes it queues it on
// its own worker; only a deadline stays with the worker it parked on (park_timers). A busy worker
// also watches the others: one that has fibers queued behind and has made no dispatcher pass for a
// while is stalled (its thread lost the CPU, or a fiber runs long), and its fibers queued behind
// are taken first. Between them the two rules give what a single shared queue gives Asio's threads
// -- no fiber waits for one particular thread -- while keeping per-worker queues for spawn trees.
//
// All state that other threads touch lives in worker_slot, owned by the pool and outliving
// every worker thread: waking a worker never touches a Boost scheduler that may be gone.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include <boost/fiber/algo/algorithm.hpp>
#include <boost/fiber/context.hpp>
#include <boost/fiber/scheduler.hpp>

#include <weft/detail/fiber_state.hpp>
#include <weft/detail/spinlock.hpp>

#include "sched/fiber_record.hpp"
#include "sched/park_timers.hpp"
#include "sched/stack_pool.hpp"

namespace weft::detail {

class pool;
class algorithm;
struct reactor;

// ready_queue is a worker's ready fibers, locked by its worker_slot: intrusive lists through
// each context's own ready hook (the one Boost's stock algorithms use for the same purpose).
// Queueing runs where nothing may throw -- awakened(), a wake-up from any thread -- so it must
// not allocate: a ring that grew there terminated the process when the memory was not there.
//
// Two parts: fibers queued on top (a child just spawned, a fiber woken by one running here)
// run newest first, for locality, as in any work-stealing scheduler; fibers queued behind (woken
// by I/O or from outside, yielding) run after them in the order they came. The top is the
// owner's; the other end -- the oldest behind, else the oldest on top -- is where thieves and
// the owner's occasional oldest-first pick take. (One list with the behind part at its
// bottom gave thieves the newest I/O-woken fiber: under load the oldest connections waited
// for the owner alone, and tail latency grew.)
class ready_queue {
 public:
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  void push_top(boost::fibers::context* c) noexcept {
    top_.push_back(*c);
    ++size_;
  }
  void push_bottom(boost::fibers::context* c) noexcept {
    behind_.push_back(*c);
    ++size_;
  }
  // pop_top() is the owner's next: the newest on top, else the oldest behind.
  boost::fibers::context* pop_top() noexcept {
    return top_.empty() ? take_front(behind_) : take_back(top_);
  }
  // pop_bottom() is the one that waited longest: the oldest behind, else the oldest on top.
  boost::fibers::context* pop_bottom() noexcept {
    return behind_.empty() ? take_front(top_) : take_front(behind_);
  }

 private:
  using list = boost::fibers::scheduler::ready_queue_type;
  boost::fibers::context* take_front(list& l) noexcept {
    boost::fibers::context* c = &l.front();
    l.pop_front();
    --size_;
    return c;
  }
  boost::fibers::context* take_back(list& l) noexcept {
    boost::fibers::context* c = &l.back();
    l.pop_back();
    --size_;
    return c;
  }

  list top_;     // oldest at the front
  list behind_;  // oldest at the front
  std::size_t size_ = 0;
};

// worker_slot is the pool-owned part of one worker.
struct alignas(64) worker_slot {
  spinlock lock;  // guards ready
  ready_queue ready;
  std::atomic<std::size_t> ready_size{0};  // lock-free hint for thieves
  // Fibers queued behind the others (woken by I/O, from outside, or yielding): guarded by
  // lock, read without it by workers looking for a stall.
  std::atomic<std::uint32_t> waiting_behind{0};
  // Dispatcher passes this worker made. One that has fibers waiting behind and makes no pass
  // for a while is stalled (its thread lost its CPU, or a fiber runs long): the other workers
  // then take those fibers before their own.
  std::atomic<std::uint32_t> progress{0};
  std::atomic<bool> sleeping{false};
  std::atomic<bool> remote_pending{false};  // Boost queued a fiber woken from another thread
  // run_next is the fiber that a fiber running here woke last, kept apart from `ready`: the
  // owner runs it next (Go's runnext), so a hand-over between two fibers stays on one worker.
  // Idle workers leave it alone while they spin and take it only before they sleep (the
  // owner may be computing). Lock-free, like Go's: put with one exchange (whose fence also
  // orders it before the waker's look for sleepers), taken with another -- a ping-pong's
  // hand-over no longer takes the queue's lock twice.
  std::atomic<boost::fibers::context*> run_next{nullptr};
  // Fibers this worker switched to (written by it only): a worker whose count does not move
  // while another spins is computing, and its run_next fiber is taken.
  std::atomic<std::uint32_t> switches{0};
  std::mutex sleep_mutex;
  std::condition_variable sleep_cv;
  bool notified = false;                   // guarded by sleep_mutex
  std::atomic<reactor*> polling{nullptr};  // the reactor this worker blocks in, if it does
  park_timers timers;                      // the deadlines of the fibers that parked on this worker
  algorithm* algo = nullptr;               // set while the worker thread runs
  stack_pool::cache stacks;                // used by this worker's thread only
  // Counters for executor::stats(), written by this worker only (no locked instruction).
  std::atomic<std::uint64_t> spawned{0};  // fibers started here
  std::atomic<std::uint64_t> steals{0};   // fibers this worker took from another's queue
  std::atomic<std::uint64_t> sleeps{0};   // times it went to sleep for want of work
  // Fibers waiting on I/O (use_fiber, gRPC calls): +1 on the worker where a wait starts, -1
  // on the one where it ends; only the sum over the workers means something.
  std::atomic<std::int64_t> io_waiting{0};
  // Units of the pool's live count this worker holds in reserve (see pool::live_): written by
  // this worker only, read by stats().
  std::atomic<std::size_t> credit{0};

  unsigned index = 0;  // of this worker in its pool

  // How many of the ready fibers another worker may take now (run_next is not among them),
  // for the spinning workers, on a line of its own and written only when it changes: a
  // ping-pong between two fibers moves run_next on every hand-over, and spinners that read
  // it took the busy worker's line away each time (they still do, at their last look before
  // they sleep). Written under lock.
  alignas(64) std::atomic<std::uint32_t> stealable{0};

  // What the other workers last saw of this one's progress, and since when (algorithm::
  // look_for_stalls): the progress in the high half, the steady clock in microseconds (mod
  // 2^32) in the low half, written by whichever worker looks and read by the others. One word
  // per worker, on a line of its own that the owner never touches: a vector per worker sized
  // by the pool was n^2 entries (64 MB zeroed for 2000 workers, before any thread started).
  alignas(64) std::atomic<std::uint64_t> progress_seen{0};

  // bump() adds one and returns the new count.
  static std::uint64_t bump(std::atomic<std::uint64_t>& counter) noexcept {
    const std::uint64_t n = counter.load(std::memory_order_relaxed) + 1;
    counter.store(n, std::memory_order_relaxed);
    return n;
  }

  // wake() ends (or pre-empts) this worker's next sleep.
  void wake() noexcept;
};

// note_stealable() refreshes w.stealable, with w.lock held.
inline void note_stealable(worker_slot& w) noexcept {
  const auto n = static_cast<std::uint32_t>(w.ready.size());
  if (w.stealable.load(std::memory_order_relaxed) != n) {
    w.stealable.store(n, std::memory_order_relaxed);
  }
}

// push_ready() queues the detached ctx on w -- at the bottom (behind the others) or the top
// -- and returns how many fibers w has ready now; any thread. dequeued() is the bookkeeping
// of every pop, with w.lock held.
std::size_t push_ready(worker_slot& w, boost::fibers::context* ctx, bool behind) noexcept;
void dequeued(worker_slot& w, boost::fibers::context* ctx) noexcept;
// push_run_next() makes the detached ctx w's run_next; the fiber it replaces goes on top of
// w's ready fibers. Any thread. take_run_next() takes w's run_next, if it has one.
void push_run_next(worker_slot& w, boost::fibers::context* ctx) noexcept;
boost::fibers::context* take_run_next(worker_slot& w) noexcept;

// io_wait_mark counts the calling pool fiber among the fibers waiting on I/O while it
// exists (executor_stats::io_waiting); on a plain thread it does nothing. Each change is
// made on the slot of the worker running the fiber at the time, by that worker only.
class io_wait_mark {
 public:
  io_wait_mark() noexcept : counted_(tl_slot_of_current_pool() != nullptr) { add(1); }
  ~io_wait_mark() { add(-1); }
  io_wait_mark(const io_wait_mark&) = delete;
  io_wait_mark& operator=(const io_wait_mark&) = delete;

 private:
  static worker_slot* tl_slot_of_current_pool() noexcept;
  void add(std::int64_t d) noexcept {
    if (!counted_) return;
    if (worker_slot* w = tl_slot_of_current_pool()) {
      w->io_waiting.store(w->io_waiting.load(std::memory_order_relaxed) + d,
                          std::memory_order_relaxed);
    }
  }
  bool counted_;
};

class algorithm final : public boost::fibers::algo::algorithm {
 public:
  algorithm(pool& owner, unsigned index, fiber_state& thread_record) noexcept;
  ~algorithm() override;

  void awakened(boost::fibers::context* ctx) noexcept override;
  boost::fibers::context* pick_next() noexcept override;
  bool has_ready_fibers() const noexcept override;
  void suspend_until(std::chrono::steady_clock::time_point const& deadline) noexcept override;
  void notify() noexcept override;

  // park_main() suspends the worker's main fiber until the pool wants it (work submitted
  // from outside, or exit). Called by the main fiber only.
  void park_main() noexcept;

  // queue() makes a detached fiber ready on this worker: behind the others if fifo, else
  // next. Called on this worker's thread.
  // run_next: a fiber running here woke it (see worker_slot::run_next).
  void queue(boost::fibers::context* ctx, bool fifo, bool run_next = false) noexcept;
  // in_reactor() is true while this thread runs the reactor's handlers.
  bool in_reactor() const noexcept { return in_reactor_; }
  worker_slot& slot() noexcept { return self_; }

  // note_parking() records that f, running here, parks; settle_parked()
  // detaches it once it is off-CPU (fiber_record::settle). Every context that resumes on
  // this worker calls settle_parked() first (resumed()), and so do pick_next() and
  // suspend_until() for the fiber that parked, as the dispatcher may be what runs next.
  void note_parking(fiber_record* f) noexcept;
  void settle_parked() noexcept {
    if (parking_ != nullptr) settle_now();
  }

 private:
  void settle_now() noexcept;
  // fire_timers() wakes the fibers parked here whose deadline passed.
  void fire_timers() noexcept;
  boost::fibers::context* steal() noexcept;
  // steal_from() takes victim's oldest ready fiber, if it has one (only one that waits
  // behind, if behind_only); never its run_next.
  boost::fibers::context* steal_from(unsigned victim, bool behind_only) noexcept;
  // note_run_next() remembers, during an idle spin, which workers have a run_next fiber and
  // how many switches they made; take_stuck_run_next() takes one of those fibers whose
  // worker has not switched since (it computes, or its thread lost the CPU).
  void note_run_next() noexcept;
  // spin() is an idle worker's search for work before it sleeps (spin_for_, never past
  // `deadline`: the next timer it must fire); true if it found some.
  bool spin(std::chrono::steady_clock::time_point deadline) noexcept;
  boost::fibers::context* take_stuck_run_next() noexcept;
  // look_for_stalls() notes a worker that has fibers waiting behind and has made no
  // dispatcher pass for kStallAfter (stalled_), and fires its expired deadlines; a busy
  // worker looks every kPollEvery passes.
  void look_for_stalls() noexcept;
  boost::fibers::context* take_local() noexcept;
  // work_visible() is true when this worker has something to do: its own queue, its main
  // fiber, remote wake-ups, or a stealable fiber at a few other workers (all of them when
  // `everywhere`).
  bool work_visible(bool everywhere) noexcept;
  // switch_to() announces the switch to next (sanitizer, exception state, the thread-local
  // record pointers) and returns next.
  boost::fibers::context* switch_to(boost::fibers::context* next) noexcept;
  // take_over() is the bookkeeping part: from now on this thread runs next.
  void take_over(boost::fibers::context* next) noexcept;
  void** outgoing_fake_stack() noexcept;
  // poll_reactor() runs the ready handlers of the executor's reactor, if it has one (false if
  // not). Any number of workers may poll at once.
  bool poll_reactor() noexcept;
  // poll_reactor_until_work() runs ready handlers one by one until work is visible (true) or
  // none is left (false).
  bool poll_reactor_until_work() noexcept;
  eh_state& eh_of(boost::fibers::context* c) noexcept;

  pool& pool_;
  worker_slot& self_;
  unsigned index_;
  fiber_state& thread_record_;
  boost::fibers::context* main_ = nullptr;        // the worker's main context
  boost::fibers::context* dispatcher_ = nullptr;  // set while the dispatcher is ready
  bool main_ready_ = false;                       // main woken by a Boost primitive
  bool main_parked_ = false;                      // main waits in park_main()
  boost::fibers::context* running_;               // what this thread runs now
  const void* main_stack_bottom_ = nullptr;
  std::size_t main_stack_size_ = 0;
  const void* dispatcher_stack_bottom_ = nullptr;  // found under ASan only (switch_to)
  std::size_t dispatcher_stack_size_ = 0;
  eh_state main_eh_;
  void* eh_globals_;   // this thread's __cxa_eh_globals, looked up once (it is a TLS lookup)
  eh_state other_eh_;  // the dispatcher's, and raw Boost fibers' (they have no record)
  void* main_fake_stack_ = nullptr;
  void* other_fake_stack_ = nullptr;
  unsigned ticks_ = 0;
  unsigned dispatches_ = 0;  // passes of the dispatcher through pick_next()
  bool in_reactor_ = false;  // this thread runs the reactor's handlers now
  struct run_next_seen {
    unsigned worker;
    std::uint32_t switches;
  };
  // note_run_next()'s record: a few workers are enough (no allocation on this path).
  std::array<run_next_seen, 8> run_next_seen_{};
  unsigned run_next_seen_count_ = 0;
  boost::fibers::context* stolen_next_ = nullptr;  // taken by take_stuck_run_next(), runs next
  unsigned rng_;
  fiber_record* parking_ = nullptr;  // parked here, not yet settled
  // This worker gave the watch back finding no work, so it handed it to nobody: if it runs a
  // fiber before it sleeps again (and takes the watch back), it must hand it off then -- a
  // worker that went to sleep without the watch while this one had it would otherwise sleep
  // on while nobody runs the reactor (a 20 ms timer completed 3 s late under TSan and load).
  bool owes_watch_ = false;
  // How long the next idle spin lasts: longer after sleeps that were cut short (see spin()).
  std::chrono::microseconds spin_for_;
  bool yield_next_spin_ = false;  // the last spin was long and found nothing (see spin())
  unsigned stalled_;              // a stalled worker, or the pool's size if none
};

// resumed() is the first thing a context does when it runs again on a worker: the
// sanitizer's half of the switch, then the fiber that parked on the way here is settled.
void resumed() noexcept;

}  // namespace weft::detail
