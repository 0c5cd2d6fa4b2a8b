// weft/token.hpp: the receipt context_var::set() returns, used to undo that set().
#pragma once

#include <cstdint>
#include <utility>

#include <weft/detail/snapshot.hpp>

namespace weft {

template <class T>
class context_var;

namespace detail {

// token_base is the untyped part of a token: what reset() checks and restores.
struct token_base {
  const void* var = nullptr;     // the context_var that made it
  binding old;                   // the binding before set() (its cell owned)
  std::uint64_t context_id = 0;  // identity of the context the set() happened in
  bool used = false;

  token_base() = default;
  token_base(const void* v, const binding& o, std::uint64_t id) noexcept
      : var(v), old(o), context_id(id) {}
  token_base(token_base&& other) noexcept
      : var(other.var),
        old(std::exchange(other.old, binding{})),
        context_id(other.context_id),
        used(std::exchange(other.used, true)) {}
  token_base& operator=(token_base&& other) noexcept {
    if (this != &other) {
      release(old);
      var = other.var;
      old = std::exchange(other.old, binding{});
      context_id = other.context_id;
      used = std::exchange(other.used, true);
    }
    return *this;
  }
  ~token_base() { release(old); }
};

// reset() restores tok's old binding of slot in the calling fiber's current context, after
// checking tok against the variable `var` (named `name` in error messages).
void reset(token_base& tok, const void* var, std::uint32_t slot, const char* name);

}  // namespace detail

// token<T> records one context_var<T>::set(); pass it to reset() to undo that set.
// Move-only; a moved-from token counts as used.
template <class T>
class token {
 public:
  // Move-only: exactly one token can undo a given set().
  token(token&&) noexcept = default;
  token& operator=(token&&) noexcept = default;
  token(const token&) = delete;
  token& operator=(const token&) = delete;

  // var() is the variable whose set() made this token.
  const context_var<T>& var() const noexcept {
    return *static_cast<const context_var<T>*>(base_.var);
  }

  // old_value() is the value bound before set(), or nullptr when the variable was unbound.
  // It stays valid for the token's lifetime. (A small trivially copyable value is kept in the
  // token itself: after a move, ask the token moved to.)
  const T* old_value() const noexcept { return detail::value_of<T>(base_.old); }

  // used() is true once the token was passed to reset() (or moved from).
  bool used() const noexcept { return base_.used; }

 private:
  friend class context_var<T>;
  token(const context_var<T>* var, const detail::binding& old, std::uint64_t context_id) noexcept
      : base_(var, old, context_id) {}

  detail::token_base base_;
};

}  // namespace weft
