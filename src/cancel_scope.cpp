// cancel_scope.cpp: the tree of cancellation scopes.
#include "cancel_scope.hpp"

#include <mutex>

#include <weft/error.hpp>

#include "fiber_record.hpp"

namespace weft::detail {

cancel_scope* make_scope(cancel_scope* parent) {
  auto* s = new cancel_scope;
  if (parent != nullptr) {
    s->parent = retain(parent);
    std::lock_guard<spinlock> g(parent->lock);
    s->requested.store(parent->requested.load(std::memory_order_relaxed),
                       std::memory_order_relaxed);
    s->sibling_next = parent->children;
    if (parent->children) parent->children->sibling_prev = s;
    parent->children = s;
  }
  return s;
}

void release(cancel_scope* s) noexcept {
  if (s == nullptr || s->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (cancel_scope* p = s->parent) {
    {
      std::lock_guard<spinlock> g(p->lock);
      if (s->sibling_prev) {
        s->sibling_prev->sibling_next = s->sibling_next;
      } else {
        p->children = s->sibling_next;
      }
      if (s->sibling_next) s->sibling_next->sibling_prev = s->sibling_prev;
    }
    release(p);
  }
  delete s;
}

void request_cancel(cancel_scope* s) noexcept {
  std::lock_guard<spinlock> g(s->lock);
  s->requested.store(true, std::memory_order_seq_cst);
  for (fiber_record* f = s->fibers; f != nullptr; f = f->scope_next)
    f->wake();
  for (cancel_scope* c = s->children; c != nullptr; c = c->sibling_next)
    request_cancel(c);
}

void enter(cancel_scope* s, fiber_record* f) noexcept {
  std::lock_guard<spinlock> g(s->lock);
  f->scope_prev = nullptr;
  f->scope_next = s->fibers;
  if (s->fibers) s->fibers->scope_prev = f;
  s->fibers = f;
}

void leave(cancel_scope* s, fiber_record* f) noexcept {
  std::lock_guard<spinlock> g(s->lock);
  if (f->scope_prev) {
    f->scope_prev->scope_next = f->scope_next;
  } else {
    s->fibers = f->scope_next;
  }
  if (f->scope_next) f->scope_next->scope_prev = f->scope_prev;
  f->scope_prev = f->scope_next = nullptr;
}

void throw_cancelled() {
  throw error(errc::cancelled, "weft: the fiber's cancellation was requested");
}

}  // namespace weft::detail
