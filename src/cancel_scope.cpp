// cancel_scope.cpp: the tree of cancellation scopes.
#include "cancel_scope.hpp"

#include <mutex>

#include <weft/error.hpp>

#include "fiber_record.hpp"

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

cancel_scope* make_scope(cancel_scope* parent) {
  auto* s = new cancel_scope;
  if (parent != nullptr) {
    s->parent = retain(parent);
    std::lock_guard<spinlock> g(parent->lock);
    s->requested.store(parent->requested.load(std::memory_order_relaxed),
                       std::memory_order_relaxed);
    push_front<&cancel_scope::sibling_prev, &cancel_scope::sibling_next>(parent->children, s);
  }
  return s;
}

void release(cancel_scope* s) noexcept {
  if (s == nullptr || s->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (cancel_scope* p = s->parent) {
    {
      std::lock_guard<spinlock> g(p->lock);
      unlink<&cancel_scope::sibling_prev, &cancel_scope::sibling_next>(p->children, s);
    }
    release(p);
  }
  delete s;
}

void request_cancel(cancel_scope* s) noexcept {
  std::lock_guard<spinlock> g(s->lock);
  s->requested.store(true, std::memory_order_seq_cst);
  for (fiber_record* f = s->fibers; f != nullptr; f = f->scope_next) {
    f->wake();
  }
  for (cancel_scope* c = s->children; c != nullptr; c = c->sibling_next) {
    request_cancel(c);
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

void throw_cancelled() {
  throw error(errc::cancelled, "weft: the fiber's cancellation was requested");
}

}  // namespace weft::detail
