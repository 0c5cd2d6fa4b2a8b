// weft/context.hpp: a snapshot of all context variables, like Python's contextvars.Context.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>

#include <weft/context_var.hpp>
#include <weft/detail/fiber_state.hpp>
#include <weft/detail/snapshot.hpp>
#include <weft/detail/spinlock.hpp>

namespace weft {

class context;

namespace detail {

// entered_context makes a context object the calling fiber's current context for its
// lifetime. Throws context_already_entered if the object is being run already.
class entered_context {
 public:
  explicit entered_context(context& target);
  entered_context(const entered_context&) = delete;
  entered_context& operator=(const entered_context&) = delete;
  ~entered_context();

 private:
  context& target_;
  fiber_state& fiber_;
  context_state* previous_;
};

}  // namespace detail

// context is an immutable snapshot mapping variables to values. Copying one is O(1) (a
// pointer copy and an atomic increment) whatever the number of bound variables, and copies
// are independent. run() makes it the current context for the duration of a call.
//
// A context object that one fiber is running may be copied (and moved from, which then
// copies) by any other fiber or thread at the same time: the copy is the snapshot as that
// run began -- the run's changes become visible to copies when it returns. The running fiber
// itself copies what it sees now. Assigning to a context that is being run throws
// context_already_entered; destroying one is undefined, like destroying a locked mutex.
class context {
 public:
  // context() is the empty context: no variable bound.
  context() noexcept = default;
  // Copies share the snapshot (O(1)) but are independent contexts: changes made while one
  // is run never show in another, and tokens made in one are refused by the others.
  context(const context& other) noexcept : state_{other.acquire(), 0} {}
  // Moving leaves `other` empty -- unless it is being run, then it is copied.
  context(context&& other) noexcept : state_{other.take(), 0} {}
  // Assignment throws weft::error(context_already_entered) if *this is being run.
  context& operator=(const context& other);
  context& operator=(context&& other);
  ~context() { detail::release(state_.root); }

  // size() is the number of variables bound in this snapshot (defaults do not count).
  std::size_t size() const noexcept;

  // contains() is true when var is bound in this snapshot.
  template <class T>
  bool contains(const context_var<T>& var) const noexcept {
    return find(var) != nullptr;
  }

  // find() returns the value bound to var in this snapshot, ignoring defaults, or nullptr.
  // The pointer stays valid until *this is next run, assigned or destroyed.
  template <class T>
  const T* find(const context_var<T>& var) const noexcept {
    return var.find_in(visible_root());
  }

  // run() calls f(a...) with *this as the calling fiber's current context, then restores the
  // previous one (also when f throws). Changes f makes are kept in *this and are not visible
  // outside. Throws weft::error(context_already_entered) if *this is being run already,
  // here or on another fiber.
  template <class F, class... A>
  decltype(auto) run(F&& f, A&&... a) {
    detail::entered_context scope(*this);
    return std::invoke(std::forward<F>(f), std::forward<A>(a)...);
  }

 private:
  friend context copy_context();
  friend class detail::entered_context;

  struct adopt_tag {};
  context(adopt_tag, detail::node* root) noexcept : state_{root, 0} {}

  // acquire() is a new reference to the snapshot a copy of *this gets (see the class comment).
  detail::node* acquire() const noexcept;
  // take() is acquire() for a move: it steals the root when *this is not being run.
  detail::node* take() noexcept;
  // replace_root() is assignment: it takes over incoming, or releases it and throws.
  void replace_root(detail::node* incoming);
  // visible_root() is the root that readers other than the runner see.
  const detail::node* visible_root() const noexcept;

  // guard_ coordinates copies with run(): bit 0 = being run (or assigned), bit 1 = the run's
  // fields below are set, bits 2.. = copies in progress.
  static constexpr std::uint32_t kEntered = 1, kPublished = 2, kCopier = 4;
  detail::context_state state_;
  mutable std::atomic<std::uint32_t> guard_{0};
  detail::node* entry_root_ = nullptr;           // while run: the snapshot it began with
  const detail::fiber_state* runner_ = nullptr;  // while run: the fiber running it
};

// copy_context() is a snapshot of the caller's current context, in O(1).
inline context copy_context() {
  detail::node* root = detail::current_root();
  if (root) detail::retain(root);
  return context(context::adopt_tag{}, root);
}

namespace detail {

// bound_call is what bind_context() returns: f plus the snapshot to run it in.
template <class F>
class bound_call {
 public:
  bound_call(context snapshot, F fn) : snapshot_(std::move(snapshot)), fn_(std::move(fn)) {}

  template <class... A>
  decltype(auto) operator()(A&&... a) {
    context c = snapshot_;
    return c.run(fn_, std::forward<A>(a)...);
  }
  template <class... A>
  decltype(auto) operator()(A&&... a) const {
    context c = snapshot_;
    return c.run(fn_, std::forward<A>(a)...);
  }

 private:
  context snapshot_;
  F fn_;
};

}  // namespace detail

// bind_context(f) returns a callable that runs f inside a copy of the context current now.
// Each call runs in a fresh copy of that snapshot, so the callable may be invoked from any
// thread, several times, even concurrently; sets made by f are not kept between calls. The
// callable is const-callable when f is.
template <class F>
auto bind_context(F&& f) {
  return detail::bound_call<std::decay_t<F>>(copy_context(), std::forward<F>(f));
}

}  // namespace weft
