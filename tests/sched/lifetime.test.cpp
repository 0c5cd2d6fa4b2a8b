// Tests of what happens when a pool fiber (or a plain thread) ends: the order in which its
// callable, fiber_local values and context values go, what their destructors may do, and that they
// never see the fiber's cancellation (API.md "Context variables" lifetimes; issue 10 items 1 and
// 6).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <weft/weft.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using test::counted_value;

namespace {

weft::context_var<std::string> request_id("request_id");
std::atomic<int> spans_closed{0};
std::atomic<int> spans_saw_request{0};

// span reads request_id in its destructor, like a tracing or logging guard.
struct span {
  bool live = true;
  span() = default;
  span(span&& o) noexcept { o.live = false; }
  ~span() {
    if (!live) return;
    ++spans_closed;
    if (request_id.get_or("<none>") == std::string(64, 'x')) ++spans_saw_request;
  }
};
weft::context_var<span> current_span("span");  // defined after request_id: goes first

weft::context_var<counted_value> late("late");
// rebinder binds another variable from its destructor.
struct rebinder {
  bool live = true;
  rebinder() = default;
  rebinder(rebinder&& o) noexcept { o.live = false; }
  ~rebinder() {
    if (live) (void)late.set(counted_value(1));
  }
};
weft::context_var<rebinder> rebind("rebind");

}  // namespace

TEST_CASE("at fiber end, value destructors read the rest of the context and may set",
          "[lifetime]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  spans_closed = 0;
  spans_saw_request = 0;
  {
    weft::executor ex(threads);
    for (int i = 0; i < 50; ++i) {
      ex.post([] {
        (void)request_id.set(std::string(64, 'x'));
        (void)current_span.set(span{});
        (void)rebind.set(rebinder{});
        weft::this_fiber::yield();  // maybe on another worker now
      });
    }
    ex.run([] {
      (void)request_id.set(std::string(64, 'x'));
      (void)current_span.set(span{});
    });
  }
  CHECK(spans_closed == 51);
  CHECK(spans_saw_request == 51);
  CHECK(counted_value::alive == 0);  // what the destructors bound went too
}

TEST_CASE("at thread exit, value destructors read the rest of the context and may set",
          "[lifetime]") {
  spans_closed = 0;
  spans_saw_request = 0;
  std::thread([] {
    (void)request_id.set(std::string(64, 'x'));
    (void)current_span.set(span{});
    (void)rebind.set(rebinder{});
  }).join();
  CHECK(spans_closed == 1);
  CHECK(spans_saw_request == 1);
  CHECK(counted_value::alive == 0);  // the value set by a destructor went too
}

TEST_CASE("values shared with a child outlive the parent and die with the child", "[lifetime]") {
  spans_closed = 0;
  {
    weft::executor ex(2);
    std::atomic<bool> release{false};
    weft::task<void> child;
    ex.run([&] {
      (void)request_id.set(std::string(64, 'x'));
      (void)current_span.set(span{});
      child = weft::spawn([&] {
        while (!release)
          weft::this_fiber::sleep_for(1ms);
        return;
      });
    });  // the parent ended; the child still holds the snapshot
    CHECK(spans_closed == 0);
    release = true;
    child.get();
  }
  CHECK(spans_closed == 1);
}

namespace {
// waits_in_destructor yields and sleeps in its destructor: a cancellation point each.
struct waits_in_destructor {
  std::atomic<int>* finished;
  ~waits_in_destructor() {
    weft::this_fiber::yield();
    weft::this_fiber::sleep_for(1ms);
    ++*finished;
  }
};
std::atomic<int> local_destructors{0};
weft::fiber_local<std::unique_ptr<waits_in_destructor>> waiting_local;
}  // namespace

TEST_CASE("destructors at the end of a cancelled fiber may wait; they see no cancellation",
          "[lifetime]") {
  const unsigned threads = GENERATE(1u, 2u);
  local_destructors = 0;
  std::atomic<int> captured{0};
  std::atomic<int> saw_cancel_in_cleanup{0};
  {
    weft::executor ex(threads);
    ex.run([&] {
      weft::task_group g;
      for (int i = 0; i < 10; ++i) {
        auto guard = std::shared_ptr<void>(nullptr, [&](void*) {
          // The callable's captures are destroyed on the fiber, after it returned.
          if (weft::this_fiber::cancellation_requested()) ++saw_cancel_in_cleanup;
          weft::this_fiber::yield();
          ++captured;
        });
        g.spawn([guard] {
          *waiting_local = std::make_unique<waits_in_destructor>(&local_destructors);
          weft::this_fiber::sleep_for(10s);  // cancelled below
        });
      }
      weft::this_fiber::sleep_for(5ms);
      g.cancel();
      g.wait();
    });
  }
  CHECK(local_destructors == 10);
  CHECK(captured == 10);
  CHECK(saw_cancel_in_cleanup == 0);
}

namespace {
struct throws_on_destroy {
  bool armed = false;
  throws_on_destroy() = default;
  explicit throws_on_destroy(bool a) : armed(a) {}
  throws_on_destroy(throws_on_destroy&& o) noexcept : armed(std::exchange(o.armed, false)) {}
  ~throws_on_destroy() noexcept(false) {
    if (armed) throw std::runtime_error("destructor failed");
  }
};
weft::fiber_local<throws_on_destroy> throwing_local;
weft::context_var<throws_on_destroy> throwing_value("throwing_value");
}  // namespace

TEST_CASE("a destructor that throws at fiber end reaches on_unhandled_exception", "[lifetime]") {
  std::atomic<int> reported{0};
  {
    weft::executor_options o;
    o.threads = 2;
    o.on_unhandled_exception = [&](std::exception_ptr e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::runtime_error& x) {
        if (std::string(x.what()) == "destructor failed") ++reported;
      }
    };
    weft::executor ex(o);
    ex.run([] { throwing_local->armed = true; });
    ex.run([] { (void)throwing_value.emplace(true); });
  }
  CHECK(reported == 2);
}

TEST_CASE("a spawned task's callable is destroyed on its fiber when it ends, not by the handle",
          "[lifetime]") {
  weft::executor ex(2);
  std::atomic<bool> destroyed_on_fiber{false};
  std::atomic<bool> destroyed{false};
  auto marker = std::shared_ptr<void>(nullptr, [&](void*) {
    destroyed_on_fiber = weft::executor::current() != nullptr;
    destroyed = true;
  });
  auto t = ex.spawn([m = std::move(marker)] { return 1; });
  t.wait();
  CHECK(destroyed);  // gone before the task reports finished, while the handle is held
  CHECK(destroyed_on_fiber);
  CHECK(t.get() == 1);
}

TEST_CASE("a scoped guard whose reset fails on a fiber is reported to the executor", "[lifetime]") {
  std::atomic<int> reported{0};
  weft::executor_options o;
  o.threads = 1;
  o.on_unhandled_exception = [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const weft::error& x) {
      if (x.code() == weft::errc::token_wrong_context) ++reported;
    }
  };
  weft::executor ex(o);
  ex.run([] {
    weft::context ctx;
    std::unique_ptr<weft::detail::scoped_binding<std::string>> guard;
    ctx.run([&] { guard.reset(new auto(request_id.scoped("inside"))); });
    guard.reset();  // outside the context it was made in
  });
  CHECK(reported == 1);
}

// ---- work accepted when no fiber stack can be mapped (issue 22 #17) -----------------------

namespace weft::detail {
// The number of stacks an executor may map before mapping "fails" (test hook, stack_pool.cpp).
extern std::atomic<std::size_t> stack_limit_for_testing;
}  // namespace weft::detail

namespace {

// stack_limit makes every executor made while it exists fail to map more than n stacks, as
// vm.max_map_count or an exhausted address space would.
class stack_limit {
 public:
  explicit stack_limit(std::size_t n) { weft::detail::stack_limit_for_testing = n; }
  stack_limit(const stack_limit&) = delete;
  ~stack_limit() { weft::detail::stack_limit_for_testing = static_cast<std::size_t>(-1); }
};

}  // namespace

TEST_CASE("work posted from outside waits for a free stack instead of being dropped",
          "[lifetime][stacks]") {
  const unsigned threads = GENERATE(1u, 2u);
  const stack_limit limit(8);
  std::atomic<int> reported{0};
  std::atomic<int> ran{0};
  weft::executor_options o;
  o.threads = threads;
  o.stack_size = 16 * 1024;
  o.on_unhandled_exception = [&](std::exception_ptr) { ++reported; };
  weft::executor ex(o);
  // Far more jobs than stacks, each holding its stack a while: most find none at first.
  constexpr int kJobs = 200;
  for (int i = 0; i < kJobs; ++i) {
    ex.post([&] {
      weft::this_fiber::sleep_for(2ms);
      ++ran;
    });
  }
  auto last = ex.spawn([] { return 5; });  // a task waits its turn the same way
  CHECK(last.get() == 5);
  ex.join();
  CHECK(ran == kJobs);
  CHECK(reported == 0);
  CHECK(ex.stats().stacks <= 8);
}

TEST_CASE(
    "with no stack to be had, spawn from a fiber throws bad_alloc and posted work fails "
    "loudly",
    "[lifetime][stacks]") {
  std::atomic<int> reported{0};
  weft::executor_options o;
  o.threads = 2;
  o.on_unhandled_exception = [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::bad_alloc&) {
      ++reported;
    }
  };
  SECTION("a fiber spawning holds the only stack: the spawn is refused synchronously") {
    const stack_limit limit(1);
    weft::executor ex(o);
    CHECK(ex.run([] {
              try {
                (void)weft::spawn([] {});
              } catch (const std::bad_alloc& e) {
                return std::string(e.what());
              }
              return std::string("spawned");
            }).find("cannot map") != std::string::npos);
  }
  SECTION("no stack at all, none held by a fiber: nothing will free one, the work fails") {
    const stack_limit limit(0);
    weft::executor ex(o);
    auto t = ex.spawn([] { return 1; });
    CHECK_THROWS_AS(t.get(), std::bad_alloc);
    ex.post([] {});
    ex.join();  // returns: the failed work is not waiting for anything
    CHECK(reported == 1);
  }
}
