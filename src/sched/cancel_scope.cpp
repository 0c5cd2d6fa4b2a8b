// cancel_scope.cpp: the tree of cancellation scopes.
#include "sched/cancel_scope.hpp"

#include <mutex>

#include <weft/error.hpp>

#include "sched/fiber_record.hpp"

namespace weft::detail {
namespace {

// push_front() / unlink() keep the intrusive doubly linked lists of a scope (its child scopes,
// its fibers); Prev and Next name the link members of T.
template <auto Prev, auto Next, class T>
void push_front(T*& head, T* item) noexcept {
  item->*Prev = nullptr;
  item->*Next = head;
  if (head != nullptr) head->*Prev = item;
  head = item;
}

template <auto Prev, auto Next, class T>
void unlink(T*& head, T* item) noexcept {
  if (item->*Prev != nullptr) {
    (item->*Prev)->*Next = item->*Next;
  } else {
    head = item->*Next;
  }
  if (item->*Next != nullptr) (item->*Next)->*Prev = item->*Prev;
  item->*Prev = item->*Next = nullptr;
}

}  // namespace

cancel_scope* make_scope(cancel_scope* parent, ticks deadline) {
  auto* s = new cancel_scope;
  s->deadline = deadline;
  if (parent != nullptr) {
    if (parent->deadline < s->deadline) s->deadline = parent->deadline;
    s->parent = retain(parent);
    std::lock_guard<spinlock> g(parent->lock);
    s->requested_at.store(parent->requested_at.load(std::memory_order_relaxed),
                          std::memory_order_relaxed);
    push_front<&cancel_scope::sibling_prev, &cancel_scope::sibling_next>(parent->children, s);
  }
  return s;
}

void release(cancel_scope* s) noexcept {
  // A loop, not recursion: the last reference to a deep chain frees it on any stack.
  while (s != nullptr) {
    const unsigned before = s->refs.fetch_sub(1, std::memory_order_acq_rel);
    WEFT_ASSERT(before != 0, "a cancellation scope released more often than retained");
    if (before != 1) return;
    cancel_scope* p = s->parent;
    if (p != nullptr) {
      std::lock_guard<spinlock> g(p->lock);
      unlink<&cancel_scope::sibling_prev, &cancel_scope::sibling_next>(p->children, s);
    }
    WEFT_ASSERT(s->fibers == nullptr && s->children == nullptr,
                "a cancellation scope freed while fibers or scopes still use it");
    delete s;
    s = p;
  }
}

namespace {

// try_retain() takes a reference unless the scope is already on its way out (its count hit
// zero and it waits for its parent's lock to unlink itself).
bool try_retain(cancel_scope* s) noexcept {
  unsigned n = s->refs.load(std::memory_order_relaxed);
  while (n != 0) {
    if (s->refs.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

// flip() marks s as cancelled at `at`; false if it was already. Under s->lock.
bool flip(cancel_scope* s, ticks at) noexcept {
  ticks expected = never;
  return s->requested_at.compare_exchange_strong(expected, at, std::memory_order_seq_cst);
}

}  // namespace

void request_cancel(cancel_scope* s) noexcept {
  // Whoever flips a scope's flag owns the walk below it: each scope is flipped once, so its
  // pending_next link is used by one canceller only. A child created after its parent was
  // flipped starts flipped (make_scope), so nothing is missed and nothing is walked twice.
  // The time of the request is what tells a fiber under a deadline which came first.
  const ticks at = now_ticks();
  {
    std::lock_guard<spinlock> g(s->lock);
    if (!flip(s, at)) return;
  }
  retain(s);
  s->pending_next = nullptr;
  cancel_scope* pending = s;
  while (pending != nullptr) {
    cancel_scope* cur = pending;
    pending = cur->pending_next;
    {
      std::lock_guard<spinlock> g(cur->lock);
      for (fiber_record* f = cur->fibers; f != nullptr; f = f->scope_next) {
        f->wake();
      }
      for (cancel_scope* c = cur->children; c != nullptr; c = c->sibling_next) {
        if (!flip(c, at)) continue;
        if (!try_retain(c)) continue;  // dying: no fiber uses it any more
        c->pending_next = pending;
        pending = c;
      }
    }
    release(cur);  // no lock held: this may take the parent's
  }
}

void enter(cancel_scope* s, fiber_record* f) noexcept {
  std::lock_guard<spinlock> g(s->lock);
  push_front<&fiber_record::scope_prev, &fiber_record::scope_next>(s->fibers, f);
}

void leave(cancel_scope* s, fiber_record* f) noexcept {
  std::lock_guard<spinlock> g(s->lock);
  unlink<&fiber_record::scope_prev, &fiber_record::scope_next>(s->fibers, f);
}

errc error_code_of(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const error& x) {
    return x.code().category() == error_category() ? static_cast<errc>(x.code().value()) : errc{};
  } catch (...) {
    return errc{};
  }
}

void throw_cancelled(const cancel_scope* s) {
  WEFT_ASSERT(s != nullptr, "a cancellation raised outside any cancellation scope");
  const ticks requested = s->requested_at.load(std::memory_order_acquire);
  if (s->deadline != never && s->deadline <= requested) {
    throw error(errc::deadline_exceeded,
                "weft: deadline exceeded (the deadline set by with_deadline/with_timeout passed)");
  }
  throw error(errc::cancelled, "weft: the fiber's cancellation was requested");
}

}  // namespace weft::detail
