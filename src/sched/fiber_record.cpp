// fiber_record.cpp: the life of one pool fiber -- its record, how it parks and wakes, and
// the C++ runtime's exception state it carries across switches.
#include "sched/fiber_record.hpp"

#include <cxxabi.h>
#include <time.h>

#include <utility>

#include <boost/fiber/context.hpp>

#include "sched/asan.hpp"
#include "sched/cancel_scope.hpp"
#include "sched/park_timers.hpp"
#include "sched/pool.hpp"
#include "sched/scheduler.hpp"
#include "sched/tsan.hpp"

namespace weft::detail {

// ---- the C++ runtime's exception bookkeeping, carried per fiber ----------------------

namespace {
struct cxa_eh_globals {  // layout fixed by the Itanium C++ ABI
  void* caught_exceptions;
  unsigned int uncaught_exceptions;
};
}  // namespace

void switch_eh(eh_state& out, const eh_state& in, void* globals) noexcept {
  auto* g = static_cast<cxa_eh_globals*>(globals);
  out.caught = g->caught_exceptions;
  out.uncaught = g->uncaught_exceptions;
  g->caught_exceptions = in.caught;
  g->uncaught_exceptions = in.uncaught;
}

std::int64_t coarse_now() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

fiber_record::fiber_record(pool& p, job* j, fiber_slot& s) noexcept
    : boost::fibers::fiber_properties(nullptr), owner(p), work(j), slot(s) {
  is_pool_fiber = true;
  own.root = std::exchange(j->context, nullptr);
  scope = std::exchange(j->scope, nullptr);
  tsan_fiber = tsan::create_fiber();
}

fiber_record::~fiber_record() {
  // After the fiber's last switch away (algorithm::switch_to released this record), on
  // whichever thread dropped Boost's last reference.
  tsan::acquire(this);
  tsan::destroy_fiber(tsan_fiber);
  release(scope);
}

void fiber_record::main() noexcept {
  resumed();
  work = work->settle(job_room_below(&slot), job_room_bytes);
  if (scope != nullptr) enter(scope, this);
  work->run(owner);
  // What runs from here on is cleanup, which must be able to finish: it no longer sees the
  // fiber's cancellation (a wait in a destructor waits instead of throwing).
  cancel_scope* inherited = std::exchange(scope, nullptr);
  if (inherited != nullptr) leave(inherited, this);
  // The callable and its captures go first, on the fiber, like std::thread's; then the
  // fiber_local values and the context -- all before anyone learns the fiber finished, so a
  // waiter sees their destructors' effects.
  work->discard_call();
  end();
  release(inherited);
  std::exchange(work, nullptr)->complete(owner);
  ending = true;
  owner.fiber_finished();
}

void fiber_record::report_unhandled(std::exception_ptr e) noexcept {
  owner.unhandled->report(std::move(e));
}

void fiber_record::wake() noexcept {
  wake_and_release(nullptr);
}

void fiber_record::wake_releasing(std::atomic<bool>& done) noexcept {
  wake_and_release(&done);
}

void fiber_record::wake_and_release(std::atomic<bool>* done) noexcept {
  std::uint8_t s = park_state_.load(std::memory_order_acquire);
  for (;;) {
    if ((s & state_mask) == parked) {
      if (park_state_.compare_exchange_weak(s, running, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
        // Ours to queue. The fiber cannot end meanwhile: whoever calls wake() holds the lock
        // the fiber needs to leave its wait (park_timers' own, for a deadline), or has not
        // set done yet.
        requeue(done);
        return;
      }
      continue;
    }
    // running: park() sees woken before it suspends; parking: settle() sees it. A
    // read-modify-write even when woken is set already: it is what orders this waker's
    // hand-over before the fiber's next look at its wait (the one that clears woken, or the
    // one that acts on it, reads it). Leaving the state alone then lost that wake-up: the
    // fiber cleared an earlier waker's mark, missed this hand-over and parked for good.
    note_waker();
    if (park_state_.compare_exchange_weak(s, s | woken, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
      break;
    }
  }
  if (done != nullptr) done->store(true, std::memory_order_release);
}

void fiber_record::note_waker() noexcept {
  // Every wake-up that marks woken says who it was, nullptr for anything but a fiber of this
  // pool: a value left from an earlier wake-up would send the fiber to a worker that has
  // nothing to do with this one.
  const bool by_fiber_here = tl_pool == &owner && current_record() != nullptr;
  waker_.store(by_fiber_here ? tl_slot : nullptr, std::memory_order_relaxed);
}

void fiber_record::requeue(std::atomic<bool>* done) noexcept {
  note_queued();
  slot.set_state(fiber_slot::ready);
  boost::fibers::context* const ctx = ctx_;
  worker_slot* const home = home_;
  pool& p = owner;
  // Not queued yet, the fiber cannot run: from here on only its context is touched, by the
  // queue it joins.
  if (done != nullptr) done->store(true, std::memory_order_release);
  worker_slot* here = tl_slot;
  if (tl_pool == &p && here != nullptr && here->algo != nullptr) {
    // A worker of the fiber's pool: the fiber runs here, where its waker's data is hot; an
    // I/O completion's fiber waits its turn behind the others (first come, first served).
    here->algo->queue(ctx, here->algo->in_reactor(), current_record() != nullptr);
  } else {
    p.queue_from_outside(*home, ctx);
  }
}

void fiber_record::settle(algorithm& here) noexcept {
  WEFT_ASSERT((park_state_.load(std::memory_order_relaxed) & state_mask) == parking,
              "a fiber settled that was not parking");
  ctx_->detach();
  home_ = &here.slot();
  std::uint8_t s = parking;
  if (park_state_.compare_exchange_strong(s, parked, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
    return;
  }
  // Woken while parking. An exchange, not a store: a wake-up since the failed CAS read the
  // state must be read (and its hand-over ordered before the fiber runs again).
  park_state_.exchange(running, std::memory_order_acq_rel);
  worker_slot* const to = waker_.exchange(nullptr, std::memory_order_relaxed);
  if (to == nullptr || to == &here.slot()) {
    requeue();  // on `here`: this runs on its thread
    return;
  }
  // To the worker whose fiber woke it, to run next there.
  note_queued();
  slot.set_state(fiber_slot::ready);
  owner.queue_to_run_next(*to, ctx_);
}

void fiber_record::woken_early() noexcept {
  worker_slot* const to = waker_.load(std::memory_order_relaxed);
  if (to == nullptr || to == tl_slot) return;
  // Woken before it could park, by a fiber running on another worker: it moves there (to run
  // next) as if it had parked, like Go's receiver, which a sender always finds parked and
  // readies on its own processor. Went on here instead, two fibers that wake each other in
  // turn stayed on two workers: every hand-over crossed threads (1.5x Go's ping-pong).
  // An exchange: a wake-up that came meanwhile stays ordered before settle() reads the state.
  park_state_.exchange(parking | woken, std::memory_order_acq_rel);
  tl_slot->algo->note_parking(this);
  ctx_->suspend();
  resumed();
}

void fiber_record::park(const clock::time_point* deadline, bool cancellable) {
  // A cancellable wait ends at the scope's deadline too; the caller then sees is_cancelled().
  clock::time_point limit;
  if (cancellable) deadline = wait_limit(deadline, scope, limit);
  std::uint8_t s = park_state_.load(std::memory_order_acquire);
  if ((s & woken) != 0) {
    woken_early();
  } else if (!(cancellable && is_cancelled(scope))) {
    if (park_state_.compare_exchange_strong(s, parking, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
      // Until its worker settles it, a wake() only sets woken: nobody schedules the fiber
      // while it may still be on-CPU.
      algorithm& here = *tl_slot->algo;
      if (deadline != nullptr && here.slot().timers.add(*this, *deadline)) {
        owner.timer_filed(*deadline);
      }
      here.note_parking(this);
      ctx_->suspend();
      resumed();
      // Before the fiber can leave (and its record go): the deadline must not fire any more.
      if (deadline != nullptr) timer_home->remove(*this);
    } else {
      woken_early();  // a wake-up came between the load and the compare-and-swap
    }
  }
  // Whatever woke it is what the caller checks next; a wake-up that came since only makes a
  // later park() return early (callers loop), so it is dropped here. The state is running:
  // only this fiber moves it out of running.
  if ((park_state_.load(std::memory_order_relaxed) & woken) != 0) {
    park_state_.fetch_and(static_cast<std::uint8_t>(~woken), std::memory_order_acq_rel);
  }
}

}  // namespace weft::detail
