// weft/detail/outcome.hpp: where a call's result waits for whoever asked for it -- a value,
// a reference or nothing -- with the exception the call threw instead.
#pragma once

#include <exception>
#include <optional>
#include <utility>

namespace weft::detail {

template <class R>
struct outcome_value {
  std::optional<R> value;
  template <class F>
  void produce(F&& f) {
    value.emplace(static_cast<F&&>(f)());
  }
  R take() { return std::move(*value); }
};

template <class R>
struct outcome_value<R&> {
  R* value = nullptr;
  template <class F>
  void produce(F&& f) {
    value = &static_cast<F&&>(f)();
  }
  R& take() { return *value; }
};

template <>
struct outcome_value<void> {
  template <class F>
  void produce(F&& f) {
    static_cast<F&&>(f)();
  }
  void take() {}
};

// outcome<R> runs a call once, keeping what it returned or threw.
template <class R>
struct outcome {
  outcome_value<R> result;
  std::exception_ptr failure;

  // capture() calls f() and keeps its result or its exception; never throws.
  template <class F>
  void capture(F&& f) noexcept {
    try {
      result.produce(static_cast<F&&>(f));
    } catch (...) {
      failure = std::current_exception();
    }
  }
};

}  // namespace weft::detail
