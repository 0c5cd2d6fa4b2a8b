// Fault injection: every allocation inside set() and reset() fails in turn, and the context
// must be exactly as it was each time (the strong guarantee), with nothing leaked. The same for
// the executor's paths -- spawn, post, offload: each failure reaches the caller as bad_alloc
// (or, for work already accepted, its task or on_unhandled_exception), nothing runs twice or
// after its caller gave up, and nothing terminates the process. And what a fiber's socket
// calls allocate once warm.
// This file replaces the global operator new, so it is its own test program.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <weft/asio.hpp>
#include <weft/weft.hpp>

#include "test_support.hpp"

// GCC cannot see that these replacements pair malloc with free on purpose.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
// Allocations still allowed before one fails; negative: never fail.
std::atomic<long> allowed{-1};
// Bytes the calling thread allocated through operator new, while set.
thread_local std::size_t* counted_bytes = nullptr;
}  // namespace

void* operator new(std::size_t n) {
  long left = allowed.load(std::memory_order_relaxed);
  while (left >= 0) {
    if (left == 0) throw std::bad_alloc();
    if (allowed.compare_exchange_weak(left, left - 1)) break;
  }
  if (counted_bytes != nullptr) *counted_bytes += n;
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

namespace {

// no_failures ends fault injection when it goes out of scope, however the scope is left.
struct no_failures {
  no_failures() = default;
  no_failures(const no_failures&) = delete;
  ~no_failures() { allowed = -1; }
};

// deeper() calls f a few frames further down the stack, so that its locals do not sit where an
// earlier call's did (a dangling pointer to the earlier call's frame must not land on them).
template <class F>
int deeper(F& f) {
  volatile char pad[2048];
  pad[0] = 1;
  const int r = f();
  return r + pad[0] - 1;
}

}  // namespace

TEST_CASE(
    "offload: each allocation failing in turn is a bad_alloc for the caller, and its call "
    "never runs",
    "[offload][alloc]") {
  weft::executor_options o;
  o.threads = 1;
  o.blocking_threads = 2;
  int failures = 0;
  for (long k = 0; k < 64; ++k) {
    // A fresh pool each time: the first call starts a blocking thread, where the allocations are.
    weft::executor ex(o);
    std::atomic<int> first_ran{0}, second_ran{0};
    const int outcome = ex.run([&] {
      no_failures guard;
      allowed = k;
      try {
        const int r = weft::offload([&] {
          ++first_ran;
          return 7;
        });
        allowed = -1;
        return r;
      } catch (const std::bad_alloc&) {
        allowed = -1;
        return -1;
      }
    });
    if (outcome == -1) ++failures;
    // A second call, from another frame, after the first: it starts a thread if none runs.
    const int second = ex.run([&] {
      auto call = [&] {
        return weft::offload([&] {
          ++second_ran;
          return 8;
        });
      };
      return deeper(call);
    });
    ex.join();
    INFO("allocation " << k << " failed");
    CHECK(second == 8);
    CHECK(second_ran == 1);
    CHECK(first_ran == (outcome == 7 ? 1 : 0));  // a call that failed never ran, even later
    if (outcome == 7 && k > 8) break;            // past the allocations of the call
  }
  CHECK(failures > 0);
}

TEST_CASE(
    "spawn and post from outside: each allocation failing in turn is a bad_alloc or the "
    "work runs once",
    "[executor][alloc]") {
  std::atomic<int> reported{0};
  weft::executor_options o;
  o.threads = 1;
  o.on_unhandled_exception = [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::bad_alloc&) {
      ++reported;
    }
  };
  int failures = 0;
  for (long k = 0; k < 32; ++k) {
    weft::executor ex(o);
    const int reported_before = reported;
    std::atomic<int> spawned_ran{0}, posted_ran{0};
    bool spawn_refused = false, post_refused = false, task_failed = false;
    {
      no_failures guard;
      allowed = k;
      try {
        auto t = ex.spawn([&] { return ++spawned_ran; });
        try {
          allowed = -1;
          (void)t.get();
        } catch (const std::bad_alloc&) {
          task_failed = true;  // accepted, then no fiber could be made: the task says so
        }
      } catch (const std::bad_alloc&) {
        spawn_refused = true;
      }
      allowed = k;
      try {
        ex.post([&] { ++posted_ran; });
      } catch (const std::bad_alloc&) {
        post_refused = true;
      }
      allowed = -1;
    }
    ex.join();
    INFO("allocation " << k << " failed");
    CHECK(spawned_ran == (spawn_refused || task_failed ? 0 : 1));
    // Posted work either ran, or was refused by post(), or its failure was reported.
    CHECK(posted_ran + (post_refused ? 1 : 0) + (reported - reported_before) <= 1);
    CHECK((post_refused || posted_ran == 1 || reported > reported_before));
    failures += (spawn_refused || task_failed) ? 1 : 0;
    if (!spawn_refused && !task_failed && !post_refused && k > 8) break;
  }
  CHECK(failures > 0);
}

TEST_CASE(
    "spawn from a fiber past a full ready queue: each allocation failing in turn is a "
    "bad_alloc for the spawner",
    "[executor][alloc]") {
  // One worker and a parent that never yields: every child stays queued as ready. At each
  // power of two from 1024 on (where a ring-shaped ready queue would have to grow), every
  // allocation of a spawn fails in turn: queueing a fiber runs where nothing may throw, so it
  // must not need memory at all.
  weft::executor ex(1);
  std::atomic<int> ran{0};
  const int refused = ex.run([&] {
    constexpr std::size_t kMost = 4096;
    std::vector<weft::task<void>> kids;
    kids.reserve(kMost + 1);
    int failures = 0;
    while (kids.size() <= kMost) {
      const std::size_t n = kids.size();
      if (n < 1024 || (n & (n - 1)) != 0) {
        kids.push_back(weft::spawn([&] { ++ran; }));
        continue;
      }
      for (long k = 0;; ++k) {
        no_failures guard;
        allowed = k;
        try {
          auto t = weft::spawn([&] { ++ran; });
          allowed = -1;
          kids.push_back(std::move(t));
          break;
        } catch (const std::bad_alloc&) {
          ++failures;
        }
      }
    }
    const int expected = static_cast<int>(kids.size());
    for (auto& t : kids)
      t.get();
    CHECK(ran == expected);
    return failures;
  });
  CHECK(refused > 0);
}

TEST_CASE("an executor's own bookkeeping grows linearly with its workers", "[executor]") {
  // Each worker kept a vector sized by the pool (stall detection): 2000 workers made 4M
  // entries, 64 MB allocated and zeroed by the constructor before any thread started. What the
  // constructing thread allocates is counted; the bound is a few times the per-worker need.
  constexpr unsigned kWorkers = 2000;
  std::size_t bytes = 0;
  {
    counted_bytes = &bytes;
    weft::executor ex{kWorkers};
    counted_bytes = nullptr;
    ex.run([] {});
  }
  CAPTURE(bytes);
  CHECK(bytes < kWorkers * std::size_t{4} * 1024);
}

TEST_CASE("a fiber's socket reads and writes allocate nothing once warm", "[asio]") {
  // Each use_fiber call keeps its state on the heap (a caller out of time may leave before the
  // operation ends): a new and a delete per read or write, until the worker kept the blocks
  // for the next calls; so did each operation's own memory. One worker, so that the fiber, the
  // completions and the counter share a thread.
  weft::executor ex{1};
  auto& io = weft::io_context(ex);
  const std::size_t bytes = ex.run([&] {
    boost::asio::local::stream_protocol::socket a(io), b(io);
    boost::asio::local::connect_pair(a, b);
    char out[64] = {1, 2, 3};
    char in[64] = {};
    auto round = [&] {
      boost::asio::async_write(a, boost::asio::buffer(out), weft::use_fiber);
      boost::asio::async_read(b, boost::asio::buffer(in), weft::use_fiber);
    };
    for (int i = 0; i < 16; ++i)
      round();
    std::size_t n = 0;
    counted_bytes = &n;
    for (int i = 0; i < 1000; ++i)
      round();
    counted_bytes = nullptr;
    CHECK(in[2] == 3);
    return n;
  });
  CHECK(bytes == 0);
}

TEST_CASE("operation memory freed on another thread comes back to the thread that allocates",
          "[asio]") {
  // In a busy pool the workers running fibers start operations (allocate) and the one polling
  // completes them (frees): a cache per thread alone would leave every block on the poller's
  // side and give the others a malloc each time. Full caches pass blocks on to a shared one.
  constexpr int kBlocks = 200;
  constexpr std::size_t kSize = 400;  // a Beast read's state
  constexpr std::size_t kAlign = alignof(std::max_align_t);
  std::vector<void*> blocks(kBlocks);
  std::atomic<int> round{0};
  std::atomic<int> freed{0};
  std::thread poller([&] {  // frees what the other thread allocated, a round at a time
    for (int r = 1; r <= 20; ++r) {
      while (round.load() < r)
        std::this_thread::yield();
      for (void* p : blocks)
        weft::detail::op_memory_deallocate(p, kSize, kAlign);
      freed.store(r);
    }
  });
  std::size_t warm_bytes = 0;
  for (int r = 1; r <= 20; ++r) {
    if (r == 11) counted_bytes = &warm_bytes;  // ten rounds to warm up
    for (void*& p : blocks)
      p = weft::detail::op_memory_allocate(kSize, kAlign);
    round.store(r);
    while (freed.load() < r)
      std::this_thread::yield();
  }
  counted_bytes = nullptr;
  poller.join();
  CHECK(warm_bytes == 0);
}
