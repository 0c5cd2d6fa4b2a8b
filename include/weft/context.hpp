// weft/context.hpp: a snapshot of all context variables, like Python's contextvars.Context.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <type_traits>
#include <utility>

#include <weft/context_var.hpp>
#include <weft/detail/fiber_state.hpp>
#include <weft/detail/snapshot.hpp>

namespace weft {

namespace detail {

// entered_context makes a context object the calling fiber's current context for its
// lifetime. Throws context_already_entered if the object is being run already.
class entered_context {
 public:
  entered_context(context_state& state, std::atomic<bool>& entered);
  entered_context(const entered_context&) = delete;
  entered_context& operator=(const entered_context&) = delete;
  ~entered_context();

 private:
  fiber_state& fiber_;
  context_state* previous_;
  std::atomic<bool>& entered_;
};

}  // namespace detail

// context is an immutable snapshot mapping variables to values. Copying one is O(1) (a
// pointer copy and an atomic increment) whatever the number of bound variables, and copies
// are independent. run() makes it the current context for the duration of a call.
class context {
 public:
  // context() is the empty context: no variable bound.
  context() noexcept = default;
  // Copies share the snapshot (O(1)) but are independent contexts: changes made while one
  // is run never show in another, and tokens made in one are refused by the others.
  context(const context& other) noexcept : state_{other.state_.root, 0} {
    if (state_.root) detail::retain(state_.root);
  }
  // Moving leaves `other` empty. Do not move a context while it is being run.
  context(context&& other) noexcept : state_{std::exchange(other.state_.root, nullptr), 0} {}
  context& operator=(const context& other) noexcept {
    context copy(other);
    std::swap(state_.root, copy.state_.root);
    return *this;
  }
  context& operator=(context&& other) noexcept {
    std::swap(state_.root, other.state_.root);
    return *this;
  }
  ~context() { detail::release(state_.root); }

  // size() is the number of variables bound in this snapshot (defaults do not count).
  std::size_t size() const noexcept { return state_.root ? state_.root->count : 0; }

  // contains() is true when var is bound in this snapshot.
  template <class T>
  bool contains(const context_var<T>& var) const noexcept {
    return var.find_in(state_.root) != nullptr;
  }

  // find() returns the value bound to var in this snapshot, ignoring defaults, or nullptr.
  template <class T>
  const T* find(const context_var<T>& var) const noexcept {
    return var.find_in(state_.root);
  }

  // run() calls f(a...) with *this as the calling fiber's current context, then restores the
  // previous one (also when f throws). Changes f makes are kept in *this and are not visible
  // outside. Throws weft::error(context_already_entered) if *this is being run already,
  // here or on another fiber.
  template <class F, class... A>
  decltype(auto) run(F&& f, A&&... a) {
    detail::entered_context scope(state_, entered_);
    return std::invoke(std::forward<F>(f), std::forward<A>(a)...);
  }

 private:
  friend context copy_context();

  detail::context_state state_;
  std::atomic<bool> entered_{false};
};

// copy_context() is a snapshot of the caller's current context, in O(1).
inline context copy_context() {
  context c;
  c.state_.root = detail::current_root();
  if (c.state_.root) detail::retain(c.state_.root);
  return c;
}

// bind_context(f) returns a callable that runs f inside a copy of the context current now.
// Each call runs in a fresh copy of that snapshot, so the callable may be invoked from any
// thread, several times, even concurrently; sets made by f are not kept between calls.
template <class F>
auto bind_context(F&& f) {
  return
      [snapshot = copy_context(), fn = std::forward<F>(f)](auto&&... a) mutable -> decltype(auto) {
        context c = snapshot;
        return c.run(fn, std::forward<decltype(a)>(a)...);
      };
}

}  // namespace weft
