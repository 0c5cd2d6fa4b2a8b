// wait.cpp: how a fiber or thread waits on a channel, select, mutex, condition variable or
// semaphore (weft/detail/wait.hpp), and how it is woken.
#include <weft/detail/wait.hpp>

#include <cstdint>
#include <mutex>

#include <weft/executor.hpp>

#include "sched/cancel_scope.hpp"
#include "sched/fiber_record.hpp"
#include "sched/waiting.hpp"

namespace weft::detail {
namespace {

// A plain thread waits in one operation at a time, so one waiter per thread serves all its
// waits (no mutex and condition variable to make per wait). A wake-up left over from an
// earlier wait only makes a later park() return early; await() loops.
thread_waiter& this_thread_waiter() noexcept {
  static thread_local thread_waiter w;
  return w;
}

// wait_done() lets the waiter leave only once whoever fired its group stopped touching it:
// that one is between its fire() and the end of complete(), a few instructions.
void wait_done(const wait_group& g) noexcept {
  for (unsigned spins = 0; !g.done.load(std::memory_order_acquire);)
    backoff(spins);
}

// ended_by() says why a wait in `scope` with timeout `until` stops now, if it does: the
// timeout wins when it passed before the scope's deadline and before any cancellation
// request (the contract: a deadline in force that comes first throws, a timeout returns).
bool ended_by(const cancel_scope* scope, const clock::time_point* until, wait_end& why) noexcept {
  const ticks own = until != nullptr ? until->time_since_epoch().count() : never;
  ticks scope_end = never;
  if (scope != nullptr) {
    scope_end = scope->requested_at.load(std::memory_order_acquire);
    if (scope->deadline < scope_end) scope_end = scope->deadline;
  }
  // No clock read for a wait with no end (most of them): it was 13% of a ping-pong.
  if (own == never && scope_end == never) return false;
  const ticks now = now_ticks();
  if (scope_end != never && now >= scope_end && scope_end <= own) {
    why = wait_end::cancelled;
    return true;
  }
  if (own != never && now >= own) {
    why = wait_end::timed_out;
    return true;
  }
  return false;
}

}  // namespace

wait_group::wait_group(wait_label l, spinlock* under) noexcept : label(l), decided_under(under) {
  if (fiber_record* self = current_record()) {
    who = self;
  } else {
    who = &this_thread_waiter();
  }
}

void complete(wait_group& g) noexcept {
  g.who->wake_releasing(g.done);
}

wait_end await(wait_group& g, const clock::time_point* until, bool cancellable) {
  fiber_record* self = current_record();

  const fiber_state* caller = tl_fiber;
  const cancel_scope* scope = cancellable && caller != nullptr ? caller->scope : nullptr;
  const wait_mark mark(g.label);
  wait_end why = wait_end::fired;
  for (;;) {
    if (g.fired_case() >= 0) {
      wait_done(g);
      why = wait_end::fired;
      break;
    }
    if (ended_by(scope, until, why)) {
      bool mine;
      if (g.decided_under != nullptr) {
        std::lock_guard<spinlock> held(*g.decided_under);
        mine = g.give_up();
      } else {
        mine = g.give_up();
      }
      if (mine) break;
      continue;  // a hand-over claimed the group first: it wins as a whole
    }
    if (self != nullptr) {
      self->park(until, scope != nullptr);
    } else {
      static_cast<thread_waiter*>(g.who)->park(until, scope);
    }
  }
  return why;
}

void refuse_wait_here(const char* what) {
  refuse_wait_on_worker(what);
}

void throw_cancelled_here() {
  const fiber_state* caller = tl_fiber;
  throw_cancelled(caller != nullptr ? caller->scope : nullptr);
}

identity caller_identity() noexcept {
  if (fiber_record* self = current_record()) return {self, self->slot.own_id()};
  // A plain thread, or a worker outside its fibers: numbered on first use.
  static std::atomic<std::uint64_t> threads{0};
  static thread_local const std::uint64_t serial =
      threads.fetch_add(1, std::memory_order_relaxed) + 1;
  return {&serial, serial};
}

unsigned random_below(unsigned n) noexcept {
  static thread_local std::uint32_t x =
      static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(&x) >> 4) | 1u;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return static_cast<unsigned>((std::uint64_t{x} * n) >> 32);
}

std::string describe(const wait_label& l) {
  std::string out = l.kind != nullptr ? l.kind : "wait";
  if (l.name != nullptr && !l.name->empty()) {
    out += ' ';
    out += *l.name;
  }
  if (l.op != nullptr) {
    out += ": ";
    out += l.op;
  }
  if (l.cases != 0) {
    out += " (";
    out += std::to_string(l.cases);
    out += l.cases == 1 ? " case)" : " cases)";
  }
  return out;
}

}  // namespace weft::detail
