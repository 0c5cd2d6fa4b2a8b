// Fault injection: every allocation inside set() and reset() fails in turn, and the context
// must be exactly as it was each time (the strong guarantee), with nothing leaked.
// This file replaces the global operator new, so it is its own test program.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <weft/context.hpp>

#include "test_support.hpp"

// GCC cannot see that these replacements pair malloc with free on purpose.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
// Allocations still allowed before one fails; negative: never fail.
std::atomic<long> allowed{-1};
}  // namespace

void* operator new(std::size_t n) {
  long left = allowed.load(std::memory_order_relaxed);
  while (left >= 0) {
    if (left == 0) throw std::bad_alloc();
    if (allowed.compare_exchange_weak(left, left - 1)) break;
  }
  if (void* p = std::malloc(n != 0 ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

using vars_t = std::vector<std::unique_ptr<weft::context_var<test::counted_value>>>;

vars_t make_vars(int n) {
  vars_t v;
  for (int i = 0; i < n; ++i) {
    v.push_back(std::make_unique<weft::context_var<test::counted_value>>("f" + std::to_string(i)));
  }
  return v;
}

int value_of(const test::counted_value& v) {
  return v.value;
}
int value_of(long v) {
  return int(v);
}

// same() checks that the current context binds exactly what `expected` binds.
template <class Vars>
bool same(const Vars& vars, const weft::context& expected) {
  const weft::context now = weft::copy_context();
  if (now.size() != expected.size()) return false;
  for (const auto& v : vars) {
    const auto* a = now.find(*v);
    const auto* b = expected.find(*v);
    if ((a == nullptr) != (b == nullptr) || (a && value_of(*a) != value_of(*b))) return false;
  }
  return true;
}

// fail_each_allocation() binds 20 of vars, then for each target variable makes every
// allocation of a set() fail in turn, then every allocation of the matching reset(), checking
// after each failure that the context is exactly as before it. make(i) is a value for i.
template <class T, class Make>
void fail_each_allocation(const std::vector<std::unique_ptr<weft::context_var<T>>>& vars,
                          Make make) {
  for (int i = 0; i < 20; ++i)
    (void)vars[std::size_t(i)]->set(make(i));
  const weft::context shared = weft::copy_context();  // forces path copies, not edits
  for (int target : {5, 40, 1099}) {  // slots past 1024: setting the last grows the trie twice
    weft::context_var<T>& var = *vars[std::size_t(target)];
    int failures = 0;
    for (long k = 0;; ++k) {
      const weft::context before = weft::copy_context();
      allowed = k;
      try {
        auto t = var.set(make(-target));
        allowed = -1;
        REQUIRE(value_of(var.get()) == -target);
        if (target < 20) {
          REQUIRE(t.old_value() != nullptr);
          REQUIRE(value_of(*t.old_value()) == target);
        } else {
          REQUIRE(t.old_value() == nullptr);
        }
        // Now make reset() fail in turn too, from a shared snapshot again.
        const weft::context after_set = weft::copy_context();
        for (long r = 0;; ++r) {
          allowed = r;
          try {
            var.reset(t);
            allowed = -1;
            break;
          } catch (const std::bad_alloc&) {
            allowed = -1;
            REQUIRE(same(vars, after_set));
            REQUIRE_FALSE(t.used());
          }
        }
        REQUIRE(same(vars, before));
        break;
      } catch (const std::bad_alloc&) {
        allowed = -1;
        ++failures;
        REQUIRE(same(vars, before));
      }
    }
    CHECK(failures > 0);  // at least one allocation (the value's cell, or a node) failed
  }
  CHECK(same(vars, shared));
}

}  // namespace

TEST_CASE("set() and reset() keep the context as it was when any allocation fails",
          "[context][alloc]") {
  vars_t vars = make_vars(1100);
  const int alive_before = test::counted_value::alive;
  weft::context ctx;
  ctx.run([&] { fail_each_allocation(vars, [](int i) { return test::counted_value(i); }); });
  ctx = weft::context();
  CHECK(test::counted_value::alive == alive_before);
}

TEST_CASE("values stored in place: set() and reset() keep the context when a node allocation fails",
          "[context][alloc]") {
  // long values live in the trie's nodes: the only allocations are the nodes copied or grown.
  std::vector<std::unique_ptr<weft::context_var<long>>> vars;
  for (int i = 0; i < 1100; ++i)
    vars.push_back(std::make_unique<weft::context_var<long>>("n" + std::to_string(i)));
  weft::context ctx;
  ctx.run([&] { fail_each_allocation(vars, [](int i) { return long(i); }); });
}
