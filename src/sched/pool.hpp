// pool.hpp: the implementation of an executor: workers, submission, lifecycle.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <weft/executor.hpp>
#include <weft/sync.hpp>

#include "base/asymmetric_fence.hpp"
#include "sched/blocking_pool.hpp"
#include "sched/scheduler.hpp"
#include "sched/stack_pool.hpp"

namespace weft::detail {

// reporter delivers unhandled exceptions; refcounted so a task handle that outlives its
// executor can still report.
struct reporter {
  std::atomic<unsigned> refs{1};
  std::function<void(std::exception_ptr)> handler;
  void report(std::exception_ptr e) noexcept;
  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
};

struct worker_slot;

// pool_service is something an executor starts on demand and stops with its pool, after
// the last fiber: its io_context (weft/asio.hpp).
struct pool_service {
  virtual ~pool_service() = default;
};

// reactor is an event loop the workers run themselves, as Go's scheduler runs its netpoller:
// one idle worker at a time blocks in it instead of sleeping, and every worker polls it (runs
// what is ready, concurrently) before it sleeps and now and then while busy, so that a
// completion usually wakes its fiber on the worker that will run it.
struct reactor {
  virtual ~reactor() = default;
  // poll() runs the handlers that are ready, without blocking.
  virtual void poll() noexcept = 0;
  // poll_one() runs at most one ready handler, without blocking; false if none was ready.
  virtual bool poll_one() noexcept = 0;
  // run_one_until() blocks until one handler ran, interrupt() was called, or the deadline.
  virtual void run_one_until(std::chrono::steady_clock::time_point deadline) noexcept = 0;
  // interrupt() ends target's run_one_until() in progress (or its next one); any thread. A
  // concurrent poll() on another worker may run the wake-up meant for target: the reactor then
  // sends it again once that poll returns (see repeat_interrupts()).
  virtual void interrupt(worker_slot& target) noexcept = 0;
  // repeat_interrupts() re-sends the wake-ups the calling thread's last poll() took from
  // workers still blocked in run_one_until().
  virtual void repeat_interrupts() noexcept = 0;
};

class pool {
 public:
  pool(executor& owner, executor_options options);
  ~pool();

  void submit(job* j, cancel_scope* scope);
  void shutdown() noexcept;
  void join();
  // orphan() is what an executor destroyed from one of its own fibers does instead of
  // join(), which would wait for itself: shut down, let the accepted work finish, and have
  // the workers exit on their own. `stand_in` becomes the executor its fibers see (through
  // executor::current(), weft::spawn, task groups), so accepted work keeps spawning children
  // as before. Neither the pool nor the stand-in is ever freed.
  void orphan(executor* stand_in) noexcept;
  bool orphaned() const noexcept { return orphaned_.load(std::memory_order_acquire); }

  // launch() starts the fiber for j on the calling worker thread.
  void launch(job* j);
  // fiber_finished() is the last thing a fiber does (on the worker it ends on).
  void fiber_finished() noexcept;
  // give_back_credit() returns the calling worker's reserve of the live count, before it
  // sleeps: join() sees live_ reach 0 only once every worker did.
  void give_back_credit(worker_slot& w) noexcept;
  // fiber_finished_last() runs when no fiber is left after shutdown: wake join() or, for an
  // orphan, stop the workers.
  void fiber_finished_last() noexcept;

  // main_wanted() is true when a worker's main fiber has something to do: work submitted
  // from outside -- unless it waits for a fiber stack to come back (stack_pool::starved) --
  // or exit.
  bool main_wanted() const noexcept {
    return (injected_.load(std::memory_order_seq_cst) != 0 && !stacks.starved()) ||
           exiting_.load(std::memory_order_relaxed);
  }
  bool exiting() const noexcept { return exiting_.load(std::memory_order_acquire); }
  job* take_injected() noexcept;

  // queue_from_outside() makes a detached fiber ready on worker `target`, from a thread that
  // is not one of this pool's workers (an offload thread, a plain thread), and wakes a
  // sleeping worker to take it.
  void queue_from_outside(worker_slot& target, boost::fibers::context* ctx) noexcept;
  // queue_to_run_next() makes a detached fiber the run_next of worker `target` (another
  // worker of this pool, whose running fiber woke it), from any of the pool's workers.
  void queue_to_run_next(worker_slot& target, boost::fibers::context* ctx) noexcept;
  // wake_sleeper() wakes one sleeping worker other than `except` (if any sleeps).
  void wake_sleeper(unsigned except) noexcept;
  bool has_sleepers() const noexcept { return sleepers_.load(std::memory_order_seq_cst) != 0; }
  // wake_for() is what a worker does after it made fibers ready (Go's wakep): it wakes a
  // sleeper only when no worker spins -- a spinning worker finds the fibers, and a wake-up per
  // hand-over (a futex call on the waker's path) cost ping-pong most of its time.
  void wake_for(unsigned except) noexcept {
    if (has_sleepers() && !has_spinners()) wake_sleeper(except);
  }
  // Spinning workers: idle, looking for work, not asleep (Go's nmspinning). A worker counts
  // itself in before its spin and out after; one that leaves the spin to run a fiber it
  // found, being the last spinner, wakes a sleeper (more may come that nobody would look for).
  bool has_spinners() const noexcept { return spinning_.load(std::memory_order_seq_cst) != 0; }
  void start_spinning() noexcept { spinning_.fetch_add(1, std::memory_order_seq_cst); }
  // stop_spinning() returns whether the caller was the last spinner.
  bool stop_spinning() noexcept { return spinning_.fetch_sub(1, std::memory_order_seq_cst) == 1; }
  void note_sleeping(worker_slot& w) noexcept;
  void note_awake(worker_slot& w) noexcept;

  unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()); }
  executor_stats stats() const noexcept;
  // worker_counters() is worker i's part of stats() (executor::workers()).
  worker_stats worker_counters(unsigned i) const noexcept;
  const std::string& name() const noexcept { return options_.name; }
  worker_slot& worker(unsigned i) noexcept { return *workers_[i]; }

  // service() is the service in `slot`, made by make() on first use.
  enum service_slot : unsigned { io_slot, service_slots };
  template <class Make>
  pool_service* service(service_slot slot, Make make) {
    std::lock_guard<std::mutex> g(services_mutex_);
    if (!services_[slot]) services_[slot].reset(make());
    return services_[slot].get();
  }

  // set_reactor() has the workers run r from now on (r lives until the pool is destroyed).
  // The watcher, if a worker sleeps as one, is woken to move into r: it may have gone to sleep
  // on its condition variable before r existed, and then nobody would run r (a plain thread's
  // first use_fiber wait on io_context(ex) of an idle pool hung).
  void set_reactor(reactor* r) noexcept {
    reactor_.store(r, std::memory_order_seq_cst);
    if (worker_slot* w = watcher_.load(std::memory_order_seq_cst)) w->wake();
  }
  reactor* current_reactor() const noexcept { return reactor_.load(std::memory_order_acquire); }

  // The watch (docs/scheduling.md): one sleeping worker at a time is the pool's watcher. It
  // sleeps in the reactor if there is one, and no later than the earliest deadline filed on
  // ANY worker, whose due timers it fires when it wakes -- so a deadline filed on a worker
  // that then computes for long still fires on time while another worker idles. Whoever gives
  // the watch back to go and run fibers wakes a sleeper to take it over (hand_off_watch).
  //
  // take_watch() makes w the watcher if nobody is; w is sleeping (note_sleeping() first).
  bool take_watch(worker_slot& w) noexcept {
    if (watch_taken_.load(std::memory_order_seq_cst) ||
        watch_taken_.exchange(true, std::memory_order_seq_cst)) {
      return false;
    }
    // Until the watcher has computed its bound, any deadline filed wakes it (see timer_filed).
    watch_until_.store(clock::time_point::max().time_since_epoch().count(),
                       std::memory_order_seq_cst);
    watcher_.store(&w, std::memory_order_seq_cst);
    return true;
  }
  // watch_until() records the bound the watcher sleeps to.
  void watch_until(clock::time_point t) noexcept {
    watch_until_.store(t.time_since_epoch().count(), std::memory_order_seq_cst);
  }
  void give_back_watch() noexcept {
    watcher_.store(nullptr, std::memory_order_seq_cst);
    watch_until_.store(clock::time_point::min().time_since_epoch().count(),
                       std::memory_order_seq_cst);
    watch_taken_.store(false, std::memory_order_seq_cst);
  }
  // watch_taken() says whether a worker has the watch (or is about to sleep with it).
  bool watch_taken() const noexcept { return watch_taken_.load(std::memory_order_seq_cst); }
  // hand_off_watch() is called by a worker that gave the watch back and leaves to run fibers
  // (Go's wakep after netpoll): if the pool has a reactor or a deadline filed, a sleeping
  // worker is woken to take the watch over -- else I/O completions and deadlines would wait
  // for this worker's fibers (a 20 ms timer took 505 ms while a woken fiber computed).
  void hand_off_watch(unsigned self) noexcept {
    if (!has_sleepers()) return;
    if (current_reactor() == nullptr && earliest_timer() == clock::time_point::max()) return;
    wake_sleeper(self);
  }
  // timer_filed() is called after a deadline that is now the earliest of its worker was filed:
  // a watcher sleeping past it is woken to sleep shorter.
  void timer_filed(clock::time_point deadline) noexcept {
    // Pairs with take_watch()'s stores and the watcher's reads of the timers: either the
    // watcher sees this deadline, or this sees the watcher's bound.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (deadline.time_since_epoch().count() < watch_until_.load(std::memory_order_relaxed)) {
      if (worker_slot* w = watcher_.load(std::memory_order_relaxed)) w->wake();
    }
  }
  // earliest_timer() is the earliest deadline filed on any worker.
  clock::time_point earliest_timer() const noexcept;
  // fire_due_timers() fires the due deadlines of every worker; the fibers they wake are queued
  // on the calling worker.
  void fire_due_timers() noexcept;

  // fibers() is executor::fibers() (introspection.cpp).
  std::vector<fiber_info> fibers() const;

  // resuming() is a worker's side of the handshake with fibers(), before it runs the fiber
  // of `slot`: it marks the fiber running, then waits while a listing copies its context
  // (see asymmetric_fence.hpp: the mark and the look need no locked instruction).
  void resuming(fiber_slot& slot) const noexcept {
    slot.set_state(fiber_slot::running);
    asymmetric_fence::light();
    if (pinning_.load(std::memory_order_acquire) != 0) [[unlikely]]
      wait_unpinned(slot);
  }

  // owner() is the executor whose pool this is (its stand-in once orphaned).
  executor* owner() const noexcept { return owner_.load(std::memory_order_acquire); }
  reporter* const unhandled;
  stack_pool stacks;
  blocking_pool blocking;  // offload()ed calls; their callers keep the pool alive

 private:
  void worker_main(unsigned index);
  void wait_unpinned(const fiber_slot& slot) const noexcept;
  // stop_workers() tells every worker to exit (there is no work left) and joins them.
  void stop_workers() noexcept;

  std::atomic<executor*> owner_;
  executor_options options_;
  std::vector<std::unique_ptr<worker_slot>> workers_;
  std::vector<std::thread> threads_;

  // The hot atomics sit on cache lines of their own: the flags are read on every switch
  // and spawn, live_ is written by every spawn and fiber end, sleepers_ whenever a worker
  // falls asleep or wakes. Sharing a line made both workers miss on each other's writes.
  alignas(64) std::atomic<std::size_t> injected_{0};  // jobs waiting in the queue below
  std::atomic<bool> closed_flag_{false};
  std::atomic<bool> exiting_{false};
  std::atomic<bool> orphaned_{false};
  // live_ is the fibers accepted and not yet finished, plus the workers' credit: a worker
  // takes kCredit units at a time and spends one per fiber it starts; a fiber that ends gives
  // its unit to the worker it ends on, which returns units in batches and all of them before
  // it sleeps. So live_ >= the fibers alive, it is 0 only when none is, and a spawn or an end
  // touches this shared line once in kCredit times (it cost skynet ~20% on 2 workers).
  static constexpr std::size_t kCredit = 64;
  alignas(64) std::atomic<std::size_t> live_{0};
  void take_credit(worker_slot& w);
  void return_live(std::size_t n) noexcept;
  alignas(64) std::atomic<unsigned> sleepers_{0};
  alignas(64) std::atomic<unsigned> spinning_{0};

  alignas(64) std::mutex inject_mutex_;  // guards the queue of work submitted from outside
  job* inject_head_ = nullptr;
  job* inject_tail_ = nullptr;
  bool closed_ = false;  // guarded by inject_mutex_
  spinlock idle_lock_;   // guards idle_waiters_ and joined_: join() waits for live_ == 0
  waiter* idle_waiters_ = nullptr;
  std::atomic<bool> stopping_{false};  // one join() stops the workers
  bool joined_ = false;
  alignas(64) std::atomic<reactor*> reactor_{nullptr};
  std::atomic<bool> watch_taken_{false};
  std::atomic<worker_slot*> watcher_{nullptr};  // the worker that has the watch, while it sleeps
  // The time the watcher sleeps to; min() while nobody watches (a busy worker then fires a
  // stalled one's deadlines, and whoever sleeps next takes the watch).
  std::atomic<clock::rep> watch_until_{clock::time_point::min().time_since_epoch().count()};
  std::mutex services_mutex_;
  std::unique_ptr<pool_service> services_[service_slots];

  // fibers() pins up to kPins fibers at a time: a worker does not resume a pinned fiber.
  static constexpr unsigned kPins = 64;
  alignas(64) mutable std::atomic<unsigned> pinning_{0};  // pins_[0, pinning_) are in use
  mutable std::atomic<const fiber_slot*> pins_[kPins] = {};
  // One listing pins at a time. A weft::mutex: a fiber that waits for a listing in progress
  // suspends, its worker runs other fibers. Held only while pinning, which runs no user code
  // and never suspends (values are printed after it is released).
  mutable weft::mutex inspect_mutex_{"fibers() listing"};
};

// tl_pool is the pool whose worker the calling thread is, or nullptr.
extern constinit thread_local pool* tl_pool WEFT_TLS_MODEL;
// tl_slot is the calling worker thread's slot in tl_pool.
extern constinit thread_local worker_slot* tl_slot WEFT_TLS_MODEL;

}  // namespace weft::detail
