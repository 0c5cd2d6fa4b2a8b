// Tests of offload() (API.md "Blocking calls").
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/post.hpp>

#include <weft/asio.hpp>
#include <weft/weft.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using test::code_of;
using test::gate;
using test::message_of;
using weft::errc;

namespace {

weft::context_var<std::string> who("who");

weft::fiber_local<std::string> scratch;

// counted_local counts its live instances: a fiber_local of it shows when values go.
struct counted_local {
  static inline std::atomic<int> alive{0};
  counted_local() { ++alive; }
  counted_local(const counted_local&) = delete;
  ~counted_local() { --alive; }
};
weft::fiber_local<counted_local> counted;

struct custom_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

TEST_CASE("offload runs f on another thread in a copy of the caller's context", "[offload]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
  ex.run([] {
    auto bound = who.set("caller");
    const auto worker = std::this_thread::get_id();
    std::thread::id ran_on;
    const std::string seen = weft::offload([&] {
      ran_on = std::this_thread::get_id();
      (void)who.set("changed in f");  // stays in f's copy
      return who.get();
    });
    CHECK(seen == "changed in f");
    CHECK(ran_on != worker);
    CHECK(who.get() == "caller");
    CHECK(weft::offload([] { return who.get(); }) == "caller");
  });
}

TEST_CASE("offload passes arguments in place and returns values, references and nothing",
          "[offload]") {
  weft::executor ex(2);
  ex.run([] {
    int counter = 0;
    weft::offload([](int& c, int by) { c += by; }, counter, 5);
    CHECK(counter == 5);
    int& r = weft::offload([&counter]() -> int& { return counter; });
    CHECK(&r == &counter);
    auto p = weft::offload([](std::unique_ptr<int> q) { return q; }, std::make_unique<int>(9));
    CHECK(*p == 9);
    CHECK(weft::offload([](int a, int b) { return a * b; }, 6, 7) == 42);
  });
}

TEST_CASE("offload rethrows f's exception as it was", "[offload]") {
  weft::executor ex(2);
  ex.run([] {
    CHECK_THROWS_AS(weft::offload([] { throw custom_failure("from the blocking pool"); }),
                    custom_failure);
    CHECK(code_of([] { weft::offload([] { throw weft::error(errc::invalid_argument, "x"); }); }) ==
          static_cast<int>(errc::invalid_argument));
    CHECK(weft::offload([] { return 1; }) == 1);  // the pool is fine afterwards
  });
}

TEST_CASE("only the calling fiber waits: its worker runs other fibers meanwhile", "[offload]") {
  weft::executor ex(1);
  ex.run([] {
    gate other_ran;
    // The blocked call waits for a fiber that can only run on the same (single) worker.
    auto other = weft::spawn([&] { other_ran.open(); });
    const bool saw_it = weft::offload([&] { return other_ran.wait(); });
    CHECK(saw_it);
    other.get();
  });
}

TEST_CASE("the blocking pool is bounded by blocking_threads and starts threads on demand",
          "[offload]") {
  weft::executor_options o;
  o.threads = 2;
  o.blocking_threads = 2;
  weft::executor ex(o);
  std::atomic<int> inside{0}, most{0}, done{0};
  ex.run([&] {
    weft::task_group g;
    for (int i = 0; i < 6; ++i) {
      g.spawn([&] {
        weft::offload([&] {
          const int now = ++inside;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          std::this_thread::sleep_for(30ms);
          --inside;
        });
        ++done;
      });
    }
  });
  CHECK(done == 6);
  CHECK(most == 2);
}

TEST_CASE("from a plain thread offload runs f on the calling thread", "[offload]") {
  const auto me = std::this_thread::get_id();
  CHECK(weft::offload([] { return std::this_thread::get_id(); }) == me);
  CHECK_THROWS_AS(weft::offload([] { throw custom_failure("inline"); }), custom_failure);
}

TEST_CASE("a call already running is never interrupted; the cancellation comes after it",
          "[offload]") {
  const unsigned threads = GENERATE(1u, 2u);
  weft::executor ex(threads);
  std::atomic<int> result{0};
  std::atomic<int> after{0};
  gate running, cancelled;
  weft::task_group g(ex);
  g.spawn([&] {
    result = weft::offload([&] {
      running.open();
      cancelled.wait();
      return 5;
    });
    after = code_of([] { weft::this_fiber::throw_if_cancelled(); });
  });
  REQUIRE(running.wait());
  g.cancel();
  cancelled.open();
  g.wait();
  CHECK(result == 5);
  CHECK(after == static_cast<int>(errc::cancelled));
}

TEST_CASE("a call still queued is withdrawn on cancellation or deadline and never runs",
          "[offload]") {
  weft::executor_options o;
  o.threads = 2;
  o.blocking_threads = 1;
  weft::executor ex(o);
  gate busy, release;
  std::atomic<bool> second_ran{false};
  // Occupy the only blocking thread.
  auto blocker = ex.spawn([&] {
    weft::offload([&] {
      busy.open();
      release.wait();
    });
  });
  REQUIRE(busy.wait());

  SECTION("cancelled") {
    std::atomic<int> code{0};
    gate queued;
    weft::task_group g(ex);
    g.spawn([&] {
      queued.open();
      code = code_of([&] { weft::offload([&] { second_ran = true; }); });
    });
    REQUIRE(queued.wait());
    std::this_thread::sleep_for(20ms);  // (either way the call cannot have started)
    g.cancel();
    g.wait();
    CHECK(code == static_cast<int>(errc::cancelled));
  }
  SECTION("out of time") {
    // The caller gets deadline_exceeded at its deadline, not when the blocking thread frees up.
    const auto start = std::chrono::steady_clock::now();
    CHECK(ex.run([&] {
      return code_of(
          [&] { weft::with_timeout(50ms, [&] { weft::offload([&] { second_ran = true; }); }); });
    }) == static_cast<int>(errc::deadline_exceeded));
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 50ms);
    CHECK(took < 2s);  // generous: the blocker holds the thread until release, far later
  }
  SECTION("out of time before the call is made") {
    CHECK(ex.run([&] {
      return code_of(
          [&] { weft::with_timeout(-1ms, [&] { weft::offload([&] { second_ran = true; }); }); });
    }) == static_cast<int>(errc::deadline_exceeded));
  }
  release.open();
  blocker.get();
  CHECK_FALSE(second_ran.load());
  CHECK(ex.run([] { return weft::offload([] { return 3; }); }) == 3);  // the pool still works
}

TEST_CASE("join and ~executor wait for offloaded calls", "[offload]") {
  std::atomic<int> finished{0};
  {
    weft::executor ex(2);
    for (int i = 0; i < 8; ++i) {
      ex.post([&] {
        weft::offload([&] {
          std::this_thread::sleep_for(20ms);
          ++finished;
        });
      });
    }
    ex.join();
    CHECK(finished == 8);
  }
  {
    weft::executor ex(2);
    for (int i = 0; i < 4; ++i) {
      ex.post([&] {
        weft::offload([&] {
          std::this_thread::sleep_for(20ms);
          ++finished;
        });
      });
    }
  }
  CHECK(finished == 12);
}

TEST_CASE("inside f there is no current executor: offload nests inline, spawn refuses",
          "[offload]") {
  weft::executor ex(2);
  ex.run([] {
    const bool inline_nested = weft::offload([] {
      const auto me = std::this_thread::get_id();
      return weft::offload([] { return std::this_thread::get_id(); }) == me;
    });
    CHECK(inline_nested);
    CHECK(weft::offload([] { return code_of([] { weft::spawn([] {}); }); }) ==
          static_cast<int>(errc::not_in_executor));
  });
}

TEST_CASE("each offloaded call has fiber_local values of its own, gone when it returns",
          "[offload][fiber_local]") {
  // One blocking thread: both calls run on it, one after the other.
  weft::executor_options o;
  o.threads = 1;
  o.blocking_threads = 1;
  weft::executor ex(o);
  ex.run([] {
    *scratch = "the caller's";
    const std::string first = weft::offload([] {
      std::string seen = *scratch;
      *scratch = "request 1's secret";
      return seen;
    });
    const std::string second = weft::offload([] { return *scratch; });
    CHECK(first.empty());
    CHECK(second.empty());
    CHECK(*scratch == "the caller's");
    // A value made in the call is destroyed before offload() returns, like a fiber's at its end.
    const int before = counted_local::alive;
    const int during = weft::offload([] {
      (void)counted.get();
      return counted_local::alive.load();
    });
    CHECK(during == before + 1);
    CHECK(counted_local::alive == before);
  });
}

TEST_CASE(
    "offload, task waits and task groups from an Asio handler on a worker thread throw "
    "would_deadlock",
    "[offload][asio]") {
  // A handler posted to io_context(ex) runs on a worker thread outside any fiber: a blocking
  // wait there would hold the worker (with one worker: forever). Two workers, so that a wait
  // that wrongly blocks still ends and the test reports it instead of hanging.
  weft::executor_options o;
  o.threads = 2;
  o.name = "handler-pool";
  weft::executor ex(o);
  struct seen_t {
    bool current_is_null = false;
    int offload = 0, get = 0, wait_for = 0, group_here = 0, group_ex = 0, spawn_free = 0;
    std::string offload_message, get_message;
    bool f_ran = false;
    int spawned_result = 0;
  };
  std::promise<seen_t> result;
  std::atomic<bool> go{false};
  boost::asio::post(weft::io_context(ex), [&] {
    seen_t s;
    s.current_is_null = weft::executor::current() == nullptr;
    s.offload = code_of([&] { weft::offload([&] { s.f_ran = true; }); });
    s.offload_message = message_of([&] { weft::offload([&] { s.f_ran = true; }); });
    // Spawning from a handler is fine: it never waits. The task stays unfinished until the
    // checks are done (else get() would not need to wait).
    auto t = ex.spawn([&go] {
      while (!go)
        weft::this_fiber::sleep_for(1ms);
      return 7;
    });
    s.get = code_of([&] { (void)t.get(); });
    s.get_message = message_of([&] { t.wait(); });
    s.wait_for = code_of([&] { (void)t.wait_for(1h); });
    s.group_here = code_of([] { weft::task_group g; });
    s.group_ex = code_of([&] { weft::task_group g(ex); });
    s.spawn_free = code_of([] { (void)weft::spawn([] {}); });
    // The task is still usable from a fiber.
    ex.post([s = std::move(s), t = std::move(t), &result, &go]() mutable {
      go = true;
      s.spawned_result = t.get();
      result.set_value(std::move(s));
    });
  });
  auto f = result.get_future();
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  const seen_t s = f.get();
  CHECK(s.current_is_null);
  CHECK(s.offload == static_cast<int>(errc::would_deadlock));
  CHECK_FALSE(s.f_ran);
  CHECK(s.offload_message.find("handler") != std::string::npos);
  CHECK(s.offload_message.find("handler-pool") != std::string::npos);
  CHECK(s.get == static_cast<int>(errc::would_deadlock));
  CHECK(s.get_message.find("handler-pool") != std::string::npos);
  CHECK(s.wait_for == static_cast<int>(errc::would_deadlock));
  CHECK(s.group_here == static_cast<int>(errc::not_in_executor));
  CHECK(s.group_ex == static_cast<int>(errc::would_deadlock));
  CHECK(s.spawn_free == static_cast<int>(errc::not_in_executor));
  CHECK(s.spawned_result == 7);
}
