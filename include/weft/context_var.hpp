// weft/context_var.hpp: a variable whose value is looked up in the current fiber's context,
// with the semantics of Python's contextvars.ContextVar.
#pragma once

#include <cstdint>
#include <new>
#include <optional>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include <weft/detail/fiber_state.hpp>
#include <weft/detail/snapshot.hpp>
#include <weft/token.hpp>

namespace weft {

class context;
class propagator;

namespace detail {

// value_printer writes one variable's value, given where it is stored: its cell, or the bytes
// of an in-place value (introspection: executor::fibers()).
using value_printer = void (*)(const void* stored, std::ostream& out);

// printable<T>: a T can be written with operator<<.
template <class T>
concept printable = requires(std::ostream& out, const T& v) {
  out << v;
};

template <class T>
void print_value(const void* stored, std::ostream& out) {
  if constexpr (!printable<T>) {
    out << "<unprintable>";
  } else if constexpr (stored_in_place<T>) {
    out << *std::launder(static_cast<const T*>(stored));
  } else {
    out << static_cast<const value_cell<T>*>(static_cast<const cell*>(stored))->value;
  }
}

// register_var() hands out the dense slot number of a new context_var (never reused: a value
// bound under a slot keeps its type for as long as any snapshot holds it) and records its
// name and printer for introspection. Past max_context_vars it throws
// weft::error(invalid_argument) naming the variable.
std::uint32_t register_var(const std::string& name, value_printer print);

[[noreturn]] void throw_lookup_failed(const std::string& name);

// bind() binds slot to b in the calling fiber's current context and returns the displaced
// binding plus the context's identity. Takes over b's cell only on success.
struct bind_result {
  binding old;
  std::uint64_t context_id;
};
bind_result bind(std::uint32_t slot, const binding& b);

template <class T>
class scoped_binding;

}  // namespace detail

// max_context_vars is how many context_vars one process may make in all. A variable's slot
// is never reused: a snapshot may still hold a value under the slot of a destroyed variable,
// and nothing tells when the last one goes, so a reused slot could show a value of the old
// variable's type as the new one's. Variables made at run time (one per request, say) use
// slots up; past the limit the constructor throws instead of letting two variables alias.
inline constexpr std::uint32_t max_context_vars = 1u << 20;

// context_var<T> names one variable of the fiber-local context. Define it at namespace
// scope, like a thread_local, not at run time (see max_context_vars); it must outlive every
// use. Reads and writes always act on the
// calling fiber's (or plain thread's) current context. Non-copyable and non-movable: the
// object's identity is the variable.
template <class T>
class context_var {
  static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                "context_var<T> needs a non-const object type");

 public:
  // context_var(name) makes a variable with no default: get() throws while it is unbound.
  // Once max_context_vars variables were made in the process, both constructors throw
  // weft::error(invalid_argument) naming the variable.
  explicit context_var(std::string name)
      : name_(std::move(name)), slot_(detail::register_var(name_, &detail::print_value<T>)) {}

  // context_var(name, default_value): get() returns default_value while it is unbound.
  context_var(std::string name, T default_value)
      : name_(std::move(name)),
        default_(std::in_place, std::move(default_value)),
        slot_(detail::register_var(name_, &detail::print_value<T>)) {}

  context_var(const context_var&) = delete;
  context_var& operator=(const context_var&) = delete;

  // name() is the name given at construction, used in error messages.
  const std::string& name() const noexcept { return name_; }

  // get() returns the bound value, else the default; throws weft::error(lookup_failed)
  // when there is neither. Never blocks, allocates nothing, takes no lock. The reference
  // stays valid until the calling fiber next changes its own context.
  const T& get() const {
    if (const T* p = try_get()) return *p;
    detail::throw_lookup_failed(name_);
  }

  // try_get() is get() returning nullptr instead of throwing.
  const T* try_get() const noexcept {
    if (const T* p = detail::find_value<T>(detail::tl_root, slot_)) return p;
    return default_ ? &*default_ : nullptr;
  }

  // get_or() returns a copy of the bound value, else fallback. Like Python's
  // ContextVar.get(default), the argument wins over the variable's own default.
  T get_or(T fallback) const {
    if (const T* p = detail::find_value<T>(detail::tl_root, slot_)) return *p;
    return fallback;
  }

  // set() binds value in the calling fiber's current context (other snapshots are never
  // changed) and returns a token that reset() takes to undo it. Strong guarantee: if T's
  // copy or move or an allocation throws, the context is unchanged. Discarding the token
  // keeps the value bound; the previous value is then freed at once, so a reference that
  // get() returned before is gone.
  [[nodiscard]] token<T> set(const T& value) { return emplace(value); }
  [[nodiscard]] token<T> set(T&& value) { return emplace(std::move(value)); }

  // emplace() is set(T(a...)) with the value built in its heap cell, never on the caller's
  // stack: the way to bind a value too large for a fiber's stack.
  template <class... A>
  [[nodiscard]] token<T> emplace(A&&... a) {
    const detail::binding b = detail::make_binding<T>(std::forward<A>(a)...);
    detail::bind_result r;
    try {
      r = detail::bind(slot_, b);
    } catch (...) {
      detail::release(b);
      throw;
    }
    return token<T>(this, r.old, r.context_id);
  }

  // reset() restores the binding from before tok's set(). Throws weft::error with
  // token_used, token_wrong_var or token_wrong_context on misuse; on success tok is used.
  void reset(token<T>& tok) { detail::reset(tok.base_, this, slot_, name_.c_str()); }

  // scoped() sets value now and resets it when the returned guard is destroyed (also when
  // an exception leaves the scope). A reset that fails there (the guard was moved to another
  // fiber, or memory ran out) is reported like an unhandled exception, never swallowed.
  [[nodiscard]] detail::scoped_binding<T> scoped(T value) {
    return detail::scoped_binding<T>(*this, std::move(value));
  }

 private:
  friend class context;
  friend class propagator;

  const T* find_in(const detail::node* root) const noexcept {
    return root != nullptr ? detail::find_value<T>(root, slot_) : nullptr;
  }

  std::string name_;
  std::optional<T> default_;
  std::uint32_t slot_;
};

namespace detail {

// scoped_binding is the guard context_var::scoped() returns.
template <class T>
class [[nodiscard]] scoped_binding {
 public:
  scoped_binding(context_var<T>& var, T value) : var_(var), token_(var.set(std::move(value))) {}
  scoped_binding(const scoped_binding&) = delete;
  scoped_binding& operator=(const scoped_binding&) = delete;
  ~scoped_binding() {
    if (token_.used()) return;
    try {
      var_.reset(token_);
    } catch (...) {
      // Only possible if the guard left the fiber that made it, or memory ran out while
      // copying a shared snapshot; a destructor must not terminate the process.
      report_unhandled_here(std::current_exception());
    }
  }

 private:
  context_var<T>& var_;
  token<T> token_;
};

}  // namespace detail
}  // namespace weft
