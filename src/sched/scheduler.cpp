// scheduler.cpp: the per-executor work-stealing algorithm (see scheduler.hpp).
#include "sched/scheduler.hpp"

#include <cxxabi.h>

#include <algorithm>

#include <boost/fiber/type.hpp>

#include <pthread.h>
#include <sched.h>

#include "sched/asan.hpp"
#include "sched/pool.hpp"
#include "sched/tsan.hpp"

namespace weft::detail {

using boost::fibers::context;
using boost::fibers::type;

namespace {

// Every kDispatchEvery picks the dispatcher runs even when fibers are ready: it frees
// finished fibers' stacks, moves expired timers and cross-thread wake-ups to the ready queue.
constexpr unsigned kDispatchEvery = 16;
// Every kFairEvery picks the owner takes its oldest fiber instead of its newest, so two
// fibers that keep waking each other cannot starve the rest of a single worker. Rare on
// purpose: each such pick may open a new branch of a spawn tree (more live fibers); every 61
// picks made skynet keep ~20k fibers alive on one worker, every 1021 about 2k, never ~70.
constexpr unsigned kFairEvery = 1021;
// A busy worker polls the reactor (the executor's io_context) every kPollEvery passes of its
// dispatcher, which runs every kDispatchEvery picks; an idle one, before it sleeps.
constexpr unsigned kPollEvery = 4;
// A worker that has fibers queued behind and makes no dispatcher pass for this long is
// stalled: its thread lost the CPU to another (the OS's time slice here is 4 ms) or one fiber
// runs long. The other workers then take those fibers before their own. Only those: taking
// any of its fibers made workers rob each other of fresh spawns, and skynet opened new
// branches of its spawn tree (13x slower and 800 MB when a stall was 16 picks without a pass,
// 5x at 200 us).
constexpr std::chrono::microseconds kStallAfter{200};
// An idle worker spins -- looks for work -- this long before it goes to sleep, and pauses
// this many times between looks. A look reads the cache lines that busy workers write on each
// switch: looking every ~20 ns (one pause) made a ping-pong between two fibers on one worker
// of two 4-5x slower than on a pool of one; every ~1.3 us it costs that worker a miss
// now and then. While any worker spins nobody is woken for new work (pool::wake_for), so
// the spin is long enough to span many hand-overs: a wake-up is a system call on the
// waker's path.
constexpr std::chrono::microseconds kSpinFor{50};
// A worker woken within kShortSleep of falling asleep spins twice as long the next time, up
// to kSpinMax; a longer sleep brings it back to kSpinFor. Each sleep costs its waker a system
// call on the waker's path: two fibers handing over to each other on one worker woke the other
// worker every ~57 us (700 sleeps in a 40 ms ping-pong), each time at once.
constexpr std::chrono::microseconds kShortSleep{100};
constexpr std::chrono::microseconds kSpinMax{800};
constexpr unsigned kPausesPerLook = 64;
// A spinning worker polls the reactor every this many looks (~10 us).
constexpr unsigned kLooksPerPoll = 8;
// While spinning it looks at this many other workers per look (a full scan per spin made
// starting and idling quadratic in the number of workers); it scans them all once before it
// sleeps.
constexpr unsigned kSpinVictims = 4;
// Going idle, a worker notes the run_next fibers of at most this many workers (all of a pool
// this small or smaller).
constexpr unsigned kRunNextLooks = 64;

fiber_record* record_of(context* ctx) noexcept {
  return static_cast<fiber_record*>(ctx->get_properties());
}

}  // namespace

void worker_slot::wake() noexcept {
  {
    std::lock_guard<std::mutex> g(sleep_mutex);
    notified = true;
  }
  sleep_cv.notify_one();
  // seq_cst, like the poller's store before it reads `notified`: either it sees notified, or
  // this sees it polling and interrupts the reactor.
  if (reactor* r = polling.load(std::memory_order_seq_cst)) r->interrupt(*this);
}

algorithm::algorithm(pool& owner, unsigned index, fiber_state& thread_record) noexcept
    : pool_(owner),
      self_(owner.worker(index)),
      index_(index),
      thread_record_(thread_record),
      main_(context::active()),
      running_(context::active()),
      eh_globals_(abi::__cxa_get_globals()),
      rng_(index * 2654435761u + 1),
      stalled_(owner.size()) {
  self_.algo = this;
  spin_for_ = kSpinFor;
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* bottom = nullptr;
    std::size_t size = 0;
    pthread_attr_getstack(&attr, &bottom, &size);
    pthread_attr_destroy(&attr);
    main_stack_bottom_ = bottom;
    main_stack_size_ = size;
  }
}

void resumed() noexcept {
  asan::finish_switch();
  if (worker_slot* w = tl_slot; w != nullptr && w->algo != nullptr) w->algo->settle_parked();
}

void algorithm::note_parking(fiber_record* f) noexcept {
  settle_parked();  // an earlier one, if no context since has resumed through resumed()
  parking_ = f;
}

void algorithm::settle_now() noexcept {
  // Not while it is still the running context: pick_next() is called on the stack of the
  // fiber that suspends.
  // (running_ is Boost's active context here; reading Boost's thread_local costs a
  // __tls_get_addr call, a few percent of a hand-over.)
  WEFT_ASSERT(running_ == context::active(), "the scheduler lost track of the running context");
  if (parking_->boost_context() == running_) return;
  std::exchange(parking_, nullptr)->settle(*this);
}

std::size_t push_ready(worker_slot& w, context* ctx, bool behind) noexcept {
  std::lock_guard<spinlock> g(w.lock);
  if (behind) {
    w.ready.push_bottom(ctx);
    if (fiber_record* rec = record_of(ctx)) {
      rec->queued_behind = true;
      w.waiting_behind.store(w.waiting_behind.load(std::memory_order_relaxed) + 1,
                             std::memory_order_relaxed);
    }
  } else {
    w.ready.push_top(ctx);
  }
  const std::size_t n = w.ready.size();
  note_stealable(w);
  // seq_cst, like the sleeper's count and both sides' loads: in their single total order
  // either the sleeper sees this fiber or the pusher sees the sleeper. With a relaxed store
  // it could wait in the store buffer while both miss each other, and a fiber queued behind
  // a busy one would wait for it (a lost wake). (A locked xchg on x86: cheaper than mfence.)
  w.ready_size.store(n, std::memory_order_seq_cst);
  return n;
}

void dequeued(worker_slot& w, context* ctx) noexcept {
  if (fiber_record* rec = record_of(ctx)) {
    rec->note_dequeued();
    if (std::exchange(rec->queued_behind, false)) {
      w.waiting_behind.store(w.waiting_behind.load(std::memory_order_relaxed) - 1,
                             std::memory_order_relaxed);
    }
  }
}

void push_run_next(worker_slot& w, context* ctx) noexcept {
  // seq_cst for the same pairing with sleepers as push_ready()'s ready_size.
  if (context* before = w.run_next.exchange(ctx, std::memory_order_seq_cst)) {
    push_ready(w, before, false);
  }
}

context* take_run_next(worker_slot& w) noexcept {
  if (w.run_next.load(std::memory_order_relaxed) == nullptr) return nullptr;
  context* c = w.run_next.exchange(nullptr, std::memory_order_acquire);
  if (c != nullptr) {
    if (fiber_record* rec = record_of(c)) rec->note_dequeued();
  }
  return c;
}

void algorithm::queue(context* ctx, bool fifo, bool run_next) noexcept {
  if (run_next && !fifo && !in_reactor_) {
    push_run_next(self_, ctx);
  } else if (!fifo && self_.run_next.load(std::memory_order_relaxed) != nullptr) {
    // Newest first, as before run_next had a slot of its own: a fiber queued on top (a child
    // just spawned) runs before the one a fiber woke earlier.
    if (context* before = take_run_next(self_)) {
      if (fiber_record* rec = record_of(before)) rec->note_queued();
      push_ready(self_, before, false);
    }
    push_ready(self_, ctx, false);
  } else if (push_ready(self_, ctx, fifo) == 1 && in_reactor_ &&
             self_.run_next.load(std::memory_order_relaxed) == nullptr) {
    // A fiber woken by a completion this worker runs is taken by this worker as soon as the
    // handlers are done; a sleeper is woken for the second one on.
    return;
  }
  pool_.wake_for(index_);
}

void algorithm::awakened(context* ctx) noexcept {
  if (context* active = context::active(); active != running_) {
    // Boost switched to `active` without asking pick_next(): a raw boost::fibers::fiber
    // started with launch::dispatch runs at once and its parent (ctx) is scheduled from the
    // new stack. Do the switch's bookkeeping now, before the parent can be stolen, so the
    // two never share a record.
    asan::start_switch(outgoing_fake_stack(), &other_fake_stack_, nullptr, 0);
    asan::finish_switch();
    take_over(active);
    tsan::switch_to_raw();  // late, but before anything of `active` is checked
  }
  if (ctx->is_context(type::pinned_context)) {
    if (ctx->is_context(type::dispatcher_context)) {
      dispatcher_ = ctx;
    } else {
      main_ready_ = true;
    }
    return;
  }
  ctx->detach();
  fiber_record* rec = record_of(ctx);
  bool fifo = in_reactor_;
  if (rec != nullptr) {
    rec->note_queued();
    rec->slot.set_state(fiber_slot::ready);
    // A yielding fiber lets the others go first; so does one woken by an I/O completion:
    // completions are served first come, first served (newest first starves the oldest
    // connections of a busy server: its tail latency).
    if (std::exchange(rec->yielding, false)) fifo = true;
  }
  queue(ctx, fifo);
}

context* algorithm::take_local() noexcept {
  // Now and then the oldest ready fiber goes first, so that two fibers handing over to each
  // other through run_next do not starve the others.
  const bool oldest_first = ticks_ % kFairEvery == 0;
  if (!oldest_first) {
    if (context* c = take_run_next(self_)) return c;
  }
  if (self_.ready_size.load(std::memory_order_relaxed) != 0) {
    std::lock_guard<spinlock> g(self_.lock);
    if (!self_.ready.empty()) {
      context* c = oldest_first ? self_.ready.pop_bottom() : self_.ready.pop_top();
      self_.ready_size.store(self_.ready.size(), std::memory_order_relaxed);
      dequeued(self_, c);
      note_stealable(self_);
      return c;
    }
  }
  return oldest_first ? take_run_next(self_) : nullptr;
}

context* algorithm::steal_from(unsigned v, bool behind_only) noexcept {
  worker_slot& victim = pool_.worker(v);
  if ((behind_only ? std::size_t{victim.waiting_behind.load(std::memory_order_relaxed)}
                   : victim.ready_size.load(std::memory_order_relaxed)) == 0) {
    return nullptr;
  }
  std::lock_guard<spinlock> g(victim.lock);
  if (victim.ready.empty() ||
      (behind_only && victim.waiting_behind.load(std::memory_order_relaxed) == 0)) {
    return nullptr;
  }
  context* c = victim.ready.pop_bottom();
  victim.ready_size.store(victim.ready.size(), std::memory_order_relaxed);
  dequeued(victim, c);
  note_stealable(victim);
  worker_slot::bump(self_.steals);
  return c;
}

context* algorithm::steal() noexcept {
  const unsigned n = pool_.size();
  if (n < 2) return nullptr;
  rng_ = rng_ * 1664525u + 1013904223u;
  const unsigned start = rng_ % n;
  for (unsigned i = 0; i < n; ++i) {
    const unsigned v = (start + i) % n;
    if (v == index_) continue;
    if (context* c = steal_from(v, false)) return c;
  }
  return nullptr;
}

void algorithm::look_for_stalls() noexcept {
  const unsigned n = pool_.size();
  stalled_ = n;
  if (n < 2) return;
  const auto now = std::chrono::steady_clock::now();
  const auto now_us = static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count());
  const unsigned looks = std::min(n - 1, kSpinVictims);
  rng_ = rng_ * 1664525u + 1013904223u;
  for (unsigned i = 0, v = rng_ % n; i < looks; ++i, v = (v + 1) % n) {
    if (v == index_) v = (v + 1) % n;
    worker_slot& w = pool_.worker(v);
    const std::uint32_t p = w.progress.load(std::memory_order_relaxed);
    const std::uint64_t seen = w.progress_seen.load(std::memory_order_relaxed);
    if (static_cast<std::uint32_t>(seen >> 32) != p) {
      w.progress_seen.store(std::uint64_t{p} << 32 | now_us, std::memory_order_relaxed);
    } else if (static_cast<std::uint32_t>(now_us - static_cast<std::uint32_t>(seen)) >=
               kStallAfter.count()) {
      if (w.waiting_behind.load(std::memory_order_relaxed) != 0) stalled_ = v;
      // (An idle worker makes no passes either; firing its deadlines for it is harmless.)
      if (w.timers.earliest() <= now) w.timers.fire(now);
    }
  }
}

context* algorithm::pick_next() noexcept {
  asan::finish_switch();
  settle_parked();
  ++ticks_;
  // A busy worker runs the reactor's ready handlers now and then -- only from the dispatcher,
  // where no fiber is half-way through suspending (a handler may wake any fiber).
  if (running_->is_context(boost::fibers::type::dispatcher_context)) {
    // The dispatcher has just moved Boost's remote wake-ups to the ready queue: the flag that
    // asked for it is answered. (Left set, it made an idle worker spin through the dispatcher
    // forever: suspend_until() saw "work" and returned at once.) A wake-up that comes after
    // this sets it again, and wakes this worker as well.
    self_.remote_pending.store(false, std::memory_order_relaxed);
    // Progress is published once per pass, not per pick: others read it (and so take its
    // cache line) only now and then.
    self_.progress.store(dispatches_, std::memory_order_relaxed);
    fire_timers();
    if (++dispatches_ % kPollEvery == 0) {
      poll_reactor();
      look_for_stalls();
    }
  }
  context* next = nullptr;
  // The main fiber turns work submitted from outside into fibers. It runs when this worker
  // has nothing local to do, and now and then regardless so a busy worker still takes some.
  const bool main_wanted = main_parked_ && running_ != main_ && pool_.main_wanted();
  if (dispatcher_ != nullptr &&
      (ticks_ % kDispatchEvery == 0 || self_.remote_pending.load(std::memory_order_relaxed))) {
    next = dispatcher_;
  } else if (main_ready_) {
    main_ready_ = false;
    next = main_;
  } else if (main_wanted && ticks_ % kDispatchEvery == kDispatchEvery / 2) {
    main_parked_ = false;
    next = main_;
  } else if (stalled_ != pool_.size() && (next = steal_from(stalled_, true)) != nullptr) {
    // A stalled worker's fibers go first: they have waited longest.
    main_->attach(next);
  } else if (stolen_next_ != nullptr) {
    next = std::exchange(stolen_next_, nullptr);
    main_->attach(next);
  } else if ((next = take_local()) != nullptr) {
    main_->attach(next);
  } else if (main_wanted) {
    main_parked_ = false;
    next = main_;
  } else if ((next = steal()) != nullptr) {
    main_->attach(next);
  } else {
    next = dispatcher_;
  }
  if (next != running_) {
    self_.switches.store(self_.switches.load(std::memory_order_relaxed) + 1,
                         std::memory_order_relaxed);
  }
  if (owes_watch_ && next != dispatcher_ && next != nullptr) [[unlikely]] {
    owes_watch_ = false;
    if (!pool_.watch_taken()) pool_.hand_off_watch(index_);
  }
  if (next == dispatcher_ && next != nullptr) {
    // The dispatcher is about to drain Boost's remote-ready queue.
    dispatcher_ = nullptr;
    self_.remote_pending.store(false, std::memory_order_relaxed);
  }
  return switch_to(next);
}

context* algorithm::switch_to(context* next) noexcept {
  if (next == nullptr) return nullptr;  // only the dispatcher asks; it will suspend_until()
  if (next != running_) {
    fiber_record* rec = record_of(next);
    if (rec != nullptr) {
      asan::start_switch(outgoing_fake_stack(), &rec->fake_stack, rec->stack_bottom,
                         rec->stack_size);
    } else if (next == main_) {
      asan::start_switch(outgoing_fake_stack(), &main_fake_stack_, main_stack_bottom_,
                         main_stack_size_);
    } else if (next->is_context(type::dispatcher_context)) {
      // The dispatcher runs the reactor's handlers: ASan must know its stack to unwind an
      // exception thrown there (else "ignoring __asan_handle_no_return", then false reports).
      if (dispatcher_stack_size_ == 0) {
        asan::heap_block(next, &dispatcher_stack_bottom_, &dispatcher_stack_size_);
      }
      asan::start_switch(outgoing_fake_stack(), &other_fake_stack_, dispatcher_stack_bottom_,
                         dispatcher_stack_size_);
    } else {  // a raw Boost fiber: a stack that is Boost's own
      asan::start_switch(outgoing_fake_stack(), &other_fake_stack_, nullptr, 0);
    }
    fiber_record* const out = record_of(running_);
    take_over(next);
    // ThreadSanitizer last: the bookkeeping above is the outgoing context's, and what runs
    // after this is the incoming one's (a synchronizing switch orders the two). An ending
    // fiber's record and stack are destroyed by whoever drops Boost's last reference to it,
    // possibly on another thread, through Boost's uninstrumented reference count:
    // ~fiber_record acquires what this releases.
    if (out != nullptr && out->ending) tsan::release(out);
    if (rec != nullptr) {
      tsan::switch_to_fiber(rec->tsan_fiber);
    } else if (next == main_) {
      tsan::switch_to_main();
    } else if (next->is_context(type::dispatcher_context)) {
      tsan::switch_to_dispatcher();
    } else {
      tsan::switch_to_raw();
    }
  }
  return next;
}

void** algorithm::outgoing_fake_stack() noexcept {
  if (fiber_record* out = record_of(running_)) {
    return out->ending ? nullptr : &out->fake_stack;  // nullptr frees an ending fiber's
  }
  return running_ == main_ ? &main_fake_stack_ : &other_fake_stack_;
}

eh_state& algorithm::eh_of(context* c) noexcept {
  if (fiber_record* rec = record_of(c)) return rec->eh;
  return c == main_ ? main_eh_ : other_eh_;
}

void algorithm::take_over(context* next) noexcept {
  WEFT_ASSERT(running_ != next, "a context switch to the running context");
  switch_eh(eh_of(running_), eh_of(next), eh_globals_);
  fiber_record* out = record_of(running_);
  fiber_record* rec = record_of(next);
  if (out != nullptr) {
    out->note_off_cpu();
    // A yielding fiber is queued (awakened(): ready) only after this switch.
    out->slot.set_state(out->ending ? fiber_slot::free : fiber_slot::suspended);
  }
  if (rec != nullptr) {
    pool_.resuming(rec->slot);
    rec->note_on_cpu();
  }
  running_ = next;
  fiber_state* f = rec ? static_cast<fiber_state*>(rec) : &thread_record_;
  tl_fiber = f;
  tl_context = f->current;
  publish_root(f->current->root);
}

bool algorithm::work_visible(bool everywhere) noexcept {
  if (self_.remote_pending.load(std::memory_order_seq_cst) || main_ready_ ||
      (main_parked_ && pool_.main_wanted()) ||
      self_.ready_size.load(std::memory_order_seq_cst) != 0 ||
      self_.run_next.load(std::memory_order_seq_cst) != nullptr) {
    return true;
  }
  const unsigned n = pool_.size();
  const unsigned looks = everywhere ? n : std::min(n, kSpinVictims);
  rng_ = rng_ * 1664525u + 1013904223u;
  const unsigned start = rng_ % n;
  for (unsigned i = 0; i < looks; ++i) {
    const worker_slot& w = pool_.worker((start + i) % n);
    // While it spins, a worker leaves another's run_next fiber to that worker; about to
    // sleep (everywhere), it counts it: a worker never sleeps while a fiber is ready.
    if (everywhere ? (w.ready_size.load(std::memory_order_seq_cst) != 0 ||
                      w.run_next.load(std::memory_order_seq_cst) != nullptr)
                   : w.stealable.load(std::memory_order_relaxed) != 0) {
      return true;
    }
  }
  return false;
}

void algorithm::note_run_next() noexcept {
  run_next_seen_count_ = 0;
  const unsigned n = pool_.size();
  // A window of kRunNextLooks workers in a bigger pool, not all of them: this runs each time a
  // worker goes idle, and scanning every worker made starting a big pool quadratic. A run_next
  // fiber outside the window still keeps this worker from sleeping (work_visible(true) counts
  // it), and a later window covers it.
  const unsigned looks = std::min(n, kRunNextLooks);
  unsigned start = 0;
  if (looks < n) {
    rng_ = rng_ * 1664525u + 1013904223u;
    start = rng_ % n;
  }
  for (unsigned i = 0; i < looks && run_next_seen_count_ < run_next_seen_.size(); ++i) {
    const unsigned v = start + i < n ? start + i : start + i - n;
    const worker_slot& w = pool_.worker(v);
    if (v != index_ && w.run_next.load(std::memory_order_relaxed) != nullptr) {
      run_next_seen_[run_next_seen_count_++] = {v, w.switches.load(std::memory_order_relaxed)};
    }
  }
}

context* algorithm::take_stuck_run_next() noexcept {
  for (unsigned i = 0; i < run_next_seen_count_; ++i) {
    const run_next_seen& seen = run_next_seen_[i];
    worker_slot& w = pool_.worker(seen.worker);
    if (w.switches.load(std::memory_order_relaxed) != seen.switches) continue;
    if (context* c = take_run_next(w)) {
      worker_slot::bump(self_.steals);
      return c;
    }
  }
  return nullptr;
}

void algorithm::fire_timers() noexcept {
  const auto earliest = self_.timers.earliest();
  if (earliest == std::chrono::steady_clock::time_point::max()) return;
  const auto now = std::chrono::steady_clock::now();
  if (earliest <= now) self_.timers.fire(now);
}

void algorithm::suspend_until(
    std::chrono::steady_clock::time_point const& boost_deadline) noexcept {
  asan::finish_switch();
  settle_parked();
  fire_timers();
  // Completions already queued (an operation that finished at once on this worker) are run
  // here rather than left for a poller -- one at a time, until one makes a fiber ready: after
  // the last ready handler, poll() runs the reactor once more to find nothing (an epoll_wait,
  // a few microseconds on this VM, that doubled the system calls of a lone timer wait).
  if (poll_reactor_until_work()) return;
  // The spin ends at the next timer this worker must fire: its own, Boost's, and -- while no
  // worker watches -- any worker's (the watcher fires them all; in a pool of more than
  // kRunNextLooks workers that scan per spin would make idling quadratic, so there a busy
  // worker fires a stalled one's timers, as before).
  auto spin_until = std::min(boost_deadline, self_.timers.earliest());
  if (pool_.size() <= kRunNextLooks && !pool_.watch_taken()) {
    spin_until = std::min(spin_until, pool_.earliest_timer());
  }
  if (spin(spin_until)) return;
  // A sleeping worker holds none of the live count: join() must be able to see it reach 0.
  pool_.give_back_credit(self_);
  // seq_cst increment, then seq_cst loads: pairs with the seq_cst store in awakened().
  pool_.note_sleeping(self_);
  worker_slot::bump(self_.sleeps);
  const auto slept_at = std::chrono::steady_clock::now();
  owes_watch_ = false;  // it takes the watch now, or another worker has it
  // Boost's sleep queue (raw Boost.Fiber waits) and this worker's parked fibers' deadlines;
  // the watcher's bound is every worker's deadlines (see take_watch in pool.hpp).
  auto deadline = std::min(boost_deadline, self_.timers.earliest());
  const bool watching = pool_.take_watch(self_);
  reactor* r = nullptr;
  if (watching) {
    deadline = std::min(boost_deadline, pool_.earliest_timer());
    pool_.watch_until(deadline);
    r = pool_.current_reactor();
  }
  if (r != nullptr) {
    // Sleep in the reactor: its completions then wake their fibers from this thread.
    self_.polling.store(r, std::memory_order_seq_cst);
    bool notified;
    {
      std::lock_guard<std::mutex> lk(self_.sleep_mutex);
      notified = std::exchange(self_.notified, false);
    }
    if (!notified && !work_visible(true)) {
      in_reactor_ = true;
      r->run_one_until(deadline);
      in_reactor_ = false;
    }
    self_.polling.store(nullptr, std::memory_order_seq_cst);
    {
      std::lock_guard<std::mutex> lk(self_.sleep_mutex);
      self_.notified = false;
    }
  } else if (!work_visible(true)) {
    std::unique_lock<std::mutex> lk(self_.sleep_mutex);
    auto woken = [this] { return self_.notified; };
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      self_.sleep_cv.wait(lk, woken);
    } else {
      self_.sleep_cv.wait_until(lk, deadline, woken);
    }
    self_.notified = false;
  }
  pool_.note_awake(self_);
  // Only a sleep that a waker cut short lengthens the next spin; one that ended at its
  // deadline (a timer) or lasted does not.
  const auto woke_at = std::chrono::steady_clock::now();
  spin_for_ = woke_at - slept_at < kShortSleep && woke_at < deadline
                  ? std::min(spin_for_ * 2, kSpinMax)
                  : kSpinFor;
  if (watching) {
    // Due deadlines of any worker -- one that computes in a fiber cannot fire its own.
    pool_.fire_due_timers();
    pool_.give_back_watch();
    // Leaving to run fibers: someone else must watch the reactor and the deadlines meanwhile.
    if (work_visible(false)) {
      pool_.hand_off_watch(index_);
    } else {
      owes_watch_ = true;  // settled in pick_next() if work turns up before the next sleep
    }
  }
}

clock::time_point pool::earliest_timer() const noexcept {
  // seq_cst: pairs with the fence in timer_filed() (see take_watch()).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  clock::time_point e = clock::time_point::max();
  for (const auto& w : workers_)
    e = std::min(e, w->timers.earliest());
  return e;
}

void pool::fire_due_timers() noexcept {
  const auto now = clock::now();
  for (const auto& w : workers_) {
    if (w->timers.earliest() <= now) w->timers.fire(now);
  }
}

bool algorithm::spin(std::chrono::steady_clock::time_point deadline) noexcept {
  pool_.start_spinning();
  note_run_next();
  bool found = false;
  bool trimming = true;
  bool yielding = false;
  unsigned looks = 0;
  const auto start = std::chrono::steady_clock::now();
  // A timer due during the spin ends it: the sleep that follows ends at once, and the next
  // pass (or the watcher) fires it.
  const auto until = std::min(start + spin_for_, deadline);
  // The run_next fibers of workers that did not switch are taken every kSpinFor, however long
  // the spin: a spin of kSpinMax must not hold them back longer than one of kSpinFor did.
  auto stuck_check = start + kSpinFor;
  for (;;) {
    if ((found = work_visible(false))) break;
    // Idle time is when stacks beyond the hot ones give their pages back, a batch at a time
    // so that new work waits for one batch at most -- until none is left (trim() takes the
    // stack pool's lock, which spawning workers need). The spin lasts as long as there is
    // trimming to do: a worker that slept with stacks left untrimmed would keep their pages
    // until the next burst (stress test: 389 MiB still resident after 20k fibers ended).
    if (trimming) {
      trimming = pool_.stacks.trim(64);
    } else {
      for (unsigned i = 0; i < kPausesPerLook; ++i)
        spin_pause();
      // A spin that follows a long one (given more than kSpinFor: its sleeps were cut short)
      // that found nothing also gives the CPU, past kSpinFor, to any thread that waits for
      // it, as TBB's backoff and Go's lock spinning yield once they have spun a while (a
      // sched_yield costs ~1.2 us here when none waits; the pauses keep a look from being
      // much quicker where it costs less). Long empty spins otherwise take the CPU from
      // whoever shares the machine: the echo benchmark's client, one thread, got 85% of a
      // core beside weft's idle workers and 98% beside Asio's coroutine threads, which block
      // at once; yielding, 94%. In 4 alternating rounds weft went from 1.01x to 1.05x the
      // coroutine server's requests/s with the epoll client (p99 1.36x -> 0.82x), 1.05x ->
      // 1.17x with the Asio client (p99 1.25x -> 0.67x). Not after a spin that found work,
      // nor after a short one: those are a busy server's, and yielding there made its spins
      // find their work 400-800 us late, after wrk's turn on the CPU (HTTP p99 0.86x ->
      // 0.98x the coroutine server's in 8 rounds; 0.82x without). Hand-overs between workers
      // (the first kSpinFor) and the channel benchmarks did not change.
      if (yielding) sched_yield();
    }
    // Now and then it runs what the reactor has ready, as Go's spinning Ms poll the network,
    // when no worker blocks in it: else a completion waited for a busy worker's next poll
    // all through a spin (up to kSpinMax).
    if (++looks % kLooksPerPoll == 0 && !pool_.watch_taken() && poll_reactor_until_work()) {
      found = true;
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= stuck_check && now < until) {
      if ((stolen_next_ = take_stuck_run_next()) != nullptr) {
        found = true;
        break;
      }
      note_run_next();
      stuck_check = now + kSpinFor;
    }
    if (!trimming && now >= until) break;
    if (!yielding && yield_next_spin_ && now - start >= kSpinFor) {
      // A yielding worker may wait a scheduler slice for the CPU: it stops counting as a
      // spinner, so that wakers wake a sleeper for new work instead of leaving it to this one.
      yielding = true;
      pool_.stop_spinning();
    }
  }
  // Past its spin: a fiber another worker left to run next while it has not switched since
  // the spin began is taken (that worker computes, or its thread lost the CPU); the next pick
  // runs it. (Checking every ~5 us, as Go's spinners do after 3 us, took the fiber an
  // unlocking fiber had woken while it went on to take the mutex again: two workers then
  // fought over the mutex's line, 162 ns per lock+unlock instead of 19.)
  if (!found) found = (stolen_next_ = take_stuck_run_next()) != nullptr;
  yield_next_spin_ = !found && spin_for_ > kSpinFor;
  // Counted out before the caller's last look (work_visible(true)) before it sleeps: a fiber
  // made ready after that look finds no spinner, and its waker wakes a sleeper. One that
  // found work wakes a sleeper if it was the last spinner (more may come that nobody would
  // look for), and so does a yielding one, which stopped counting already.
  const bool last = yielding || pool_.stop_spinning();
  if (last && found) pool_.wake_for(index_);
  return found;
}

bool algorithm::poll_reactor_until_work() noexcept {
  reactor* r = pool_.current_reactor();
  if (r == nullptr) return false;
  bool work = false;
  in_reactor_ = true;
  while (!work && r->poll_one())
    work = work_visible(false);
  in_reactor_ = false;
  r->repeat_interrupts();
  return work;
}

bool algorithm::poll_reactor() noexcept {
  reactor* r = pool_.current_reactor();
  if (r == nullptr) return false;
  in_reactor_ = true;
  r->poll();
  in_reactor_ = false;
  // Outside the poll, so that this thread does not take them again at once.
  r->repeat_interrupts();
  return true;
}

void algorithm::notify() noexcept {
  self_.remote_pending.store(true, std::memory_order_seq_cst);
  self_.wake();
}

bool algorithm::has_ready_fibers() const noexcept {
  return self_.ready_size.load(std::memory_order_relaxed) != 0 ||
         self_.run_next.load(std::memory_order_relaxed) != nullptr || main_ready_ ||
         dispatcher_ != nullptr;
}

void algorithm::park_main() noexcept {
  main_parked_ = true;
  context::active()->suspend();
  resumed();
}

algorithm::~algorithm() {
  // Boost's dispatcher returns to the main context without asking pick_next(): tell the
  // sanitizer we are back on the thread's own stack.
  asan::start_switch(&other_fake_stack_, &main_fake_stack_, main_stack_bottom_, main_stack_size_);
  asan::finish_switch();
  tsan::thread_ends();
  self_.algo = nullptr;
}

}  // namespace weft::detail
