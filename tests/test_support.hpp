// test_support.hpp: helpers shared by the test files.
#pragma once

#include <atomic>
#include <string>
#include <utility>

#include <weft/error.hpp>

namespace test {

// counted_value counts live instances, to check when values are destroyed.
struct counted_value {
  static inline std::atomic<int> alive{0};
  int value;
  explicit counted_value(int v = 0) : value(v) { ++alive; }
  counted_value(const counted_value& o) : value(o.value) { ++alive; }
  counted_value(counted_value&& o) noexcept : value(o.value) { ++alive; }
  counted_value& operator=(const counted_value&) = default;
  ~counted_value() { --alive; }
};

// code_of() runs f and returns the errc of the weft::error it throws (or 0 if none).
template <class F>
int code_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const weft::error& e) {
    return e.code().value();
  }
  return 0;
}

template <class F>
std::string message_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const weft::error& e) {
    return e.what();
  }
  return {};
}

}  // namespace test
