// Tests of shielded() (include/weft/shield.hpp): work that the caller's cancellation and
// deadline do not end.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>

#include <weft/weft.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using test::code_of;
using weft::errc;
using clock_type = std::chrono::steady_clock;

namespace {

using test::kCancelled;
using test::kDeadline;
using test::on_each;

std::optional<clock_type::time_point> deadline_now() {
  return weft::this_fiber::deadline();
}

// send_later() sends v on ch from a thread of its own after d: the value a shielded wait
// waits for comes late and from outside the pool, as a completion from another library does.
std::thread send_later(weft::channel<int>& ch, std::chrono::milliseconds d, int v) {
  return std::thread([&ch, d, v] {
    std::this_thread::sleep_for(d);
    ch.send(v);
  });
}

// spin() burns `us` microseconds without a cancellation point.
void spin(int us) {
  const auto until = clock_type::now() + std::chrono::microseconds(us);
  while (clock_type::now() < until) {
  }
}

}  // namespace

TEST_CASE("shielded runs f on the caller and returns its result or its exception", "[shield]") {
  on_each([] {
    CHECK(weft::shielded([](int a, int b) { return a + b; }, 2, 3) == 5);
    int x = 0;
    int& r = weft::shielded([&x]() -> int& { return x; });
    CHECK(&r == &x);
    auto moved = weft::shielded([](std::unique_ptr<int> p) { return p; }, std::make_unique<int>(7));
    CHECK(*moved == 7);
    CHECK_THROWS_AS(weft::shielded([] { throw std::runtime_error("mine"); }), std::runtime_error);
    // Nothing in force before, nothing in force after.
    CHECK_FALSE(deadline_now().has_value());
    CHECK_FALSE(weft::this_fiber::cancellation_requested());
  });
  // A thread that never used weft before: nothing to set aside.
  int on_fresh_thread = 0;
  std::thread([&] { on_fresh_thread = weft::shielded([] { return 9; }); }).join();
  CHECK(on_fresh_thread == 9);
}

TEST_CASE("a cancelled group's fiber waits in a shielded recv until the value comes", "[shield]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  ex.run([&ex] {
    weft::channel<int> ch(1, "shielded");
    std::atomic<int> got{0};
    std::atomic<int> requested_inside{-1};
    std::atomic<bool> deadline_inside{true};
    std::atomic<int> after{-1};
    weft::task_group g;
    g.spawn([&] {
      got = weft::shielded([&] {
        const int v = *ch.recv();
        requested_inside = weft::this_fiber::cancellation_requested();
        deadline_inside = deadline_now().has_value();
        return v;
      });
      // The cancellation requested during the shield shows at the first point after it.
      after = code_of([] { weft::this_fiber::throw_if_cancelled(); });
    });
    REQUIRE(test::eventually_here([&] { return test::parked_on(ex, "channel shielded: recv"); }));
    g.cancel();
    weft::this_fiber::sleep_for(30ms);  // a cancellable recv would have thrown by now
    CHECK(got == 0);
    CHECK(test::parked_on(ex, "channel shielded: recv"));
    ch.send(7);
    g.wait();
    CHECK(got == 7);
    CHECK(requested_inside == 0);
    CHECK_FALSE(deadline_inside);
    CHECK(after == kCancelled);
  });
}

TEST_CASE("after the shield a cancellation wakes the fiber's waits again", "[shield]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  ex.run([&ex] {
    weft::channel<int> never(1, "never");
    std::atomic<int> code{-1};
    weft::task_group g;
    g.spawn([&] {
      weft::shielded([] { weft::this_fiber::sleep_for(1ms); });
      code = code_of([&] { never.recv(); });
    });
    REQUIRE(test::eventually_here([&] { return test::parked_on(ex, "channel never: recv"); }));
    g.cancel();  // must wake the parked recv: the fiber is back in its group's scope
    g.wait();
    CHECK(code == kCancelled);
  });
}

TEST_CASE("a fiber cancelled before the shield waits, sleeps and yields in it", "[shield]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  ex.run([] {
    weft::channel<int> ch(1);
    std::atomic<int> got{0};
    std::atomic<int> inside_code{-1};
    std::atomic<int> after{-1};
    weft::task_group g;
    g.cancel();  // the child starts cancelled
    std::thread sender = send_later(ch, 20ms, 3);
    g.spawn([&] {
      weft::shielded([&] {
        inside_code = code_of([&] {
          weft::this_fiber::throw_if_cancelled();
          weft::this_fiber::yield();
          weft::this_fiber::sleep_for(2ms);
          got = *ch.recv();
        });
      });
      after = code_of([] { weft::this_fiber::yield(); });
    });
    g.wait();
    sender.join();
    CHECK(inside_code == 0);
    CHECK(got == 3);
    CHECK(after == kCancelled);
  });
}

TEST_CASE("a deadline passed outside does not end a shielded wait; it shows right after",
          "[shield]") {
  on_each([] {
    weft::channel<int> ch(1);
    std::thread sender = send_later(ch, 40ms, 5);
    int got = 0;
    bool left_shield = false;
    const auto start = clock_type::now();
    const int code = code_of([&] {
      weft::with_timeout(5ms, [&] {
        got = weft::shielded([&] {
          weft::this_fiber::sleep_for(20ms);  // past the outer deadline, and not ended by it
          return *ch.recv();
        });
        left_shield = true;
        weft::this_fiber::sleep_for(60s);  // the first cancellation point after the shield
      });
    });
    sender.join();
    CHECK(code == kDeadline);
    CHECK(got == 5);
    CHECK(left_shield);
    CHECK(clock_type::now() - start >= 20ms);
    CHECK(clock_type::now() - start < 20s);  // the 60 s sleep ended at once
  });
}

TEST_CASE("a deadline opened inside the shield ends the waits inside it", "[shield]") {
  on_each([] {
    int after = -1;
    weft::with_deadline(clock_type::now() - 1h, [&] {  // out of time from the start
      weft::shielded([] {
        CHECK_FALSE(deadline_now().has_value());
        CHECK_FALSE(weft::this_fiber::cancellation_requested());
        const auto start = clock_type::now();
        const auto tp = start + 20ms;
        CHECK(code_of([&] {
                weft::with_deadline(tp, [&] {
                  CHECK(deadline_now() == tp);
                  weft::this_fiber::sleep_for(60s);
                });
              }) == kDeadline);
        CHECK(clock_type::now() >= tp);
        CHECK(clock_type::now() - start < 20s);
        // A deadline later than the one outside is the one in force: the outer one is not.
        const auto later = clock_type::now() + 1h;
        weft::with_deadline(later, [&] { CHECK(deadline_now() == later); });
        CHECK_FALSE(deadline_now().has_value());
        CHECK_NOTHROW(weft::this_fiber::sleep_for(1ms));
      });
      after = code_of([] { weft::this_fiber::throw_if_cancelled(); });
    });
    CHECK(after == kDeadline);
  });
}

TEST_CASE("fibers spawned in the shield are not cancelled by the outer group", "[shield]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  ex.run([&ex] {
    std::atomic<int> started{0};
    std::atomic<bool> outer_cancelled{false};
    std::atomic<int> spawned_code{-1};
    std::atomic<int> grouped_code{-1};
    std::atomic<int> posted_code{-1};
    std::atomic<int> own_after{-1};
    // Each child sleeps past the outer cancellation, then reports what it saw.
    auto child = [&] {
      ++started;
      const int code = code_of([] { weft::this_fiber::sleep_for(40ms); });
      return code + (weft::this_fiber::cancellation_requested() ? 1000 : 0);
    };
    weft::task_group g;
    g.spawn([&] {
      weft::task<int> spawned;
      weft::shielded([&] {
        spawned = weft::spawn(child);
        ex.post([&] { posted_code = child(); });
        weft::task_group inner;
        inner.spawn([&] { grouped_code = child(); });
        while (!outer_cancelled)
          weft::this_fiber::sleep_for(1ms);  // shielded: not ended by the cancellation
        inner.wait();
      });
      own_after = code_of([] { weft::this_fiber::throw_if_cancelled(); });
      // The task outlives the shield and stays out of the cancellation; waiting for it here
      // needs a shield again, this fiber being cancelled.
      spawned_code = weft::shielded([&] { return spawned.get(); });
    });
    REQUIRE(test::eventually_here([&] { return started == 3; }));
    g.cancel();
    outer_cancelled = true;
    g.wait();
    CHECK(test::eventually_here([&] { return posted_code != -1; }));
    CHECK(spawned_code == 0);
    CHECK(grouped_code == 0);
    CHECK(posted_code == 0);
    CHECK(own_after == kCancelled);
  });
}

TEST_CASE("fibers spawned in the shield do not inherit the outer deadline", "[shield]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  ex.run([] {
    weft::task<int> t = weft::with_timeout(5ms, [] {
      return weft::shielded([] {
        return weft::spawn([] {
          if (deadline_now().has_value()) return -2;
          return code_of([] { weft::this_fiber::sleep_for(30ms); });
        });
      });
    });
    CHECK(t.get() == 0);
  });
}

TEST_CASE("exceptions leave the shield, and the caller's cancellation is back", "[shield]") {
  on_each([] {
    const auto tp = clock_type::now() - 1h;
    weft::with_deadline(tp, [&] {
      CHECK_THROWS_AS(weft::shielded([] {
                        weft::this_fiber::sleep_for(1ms);
                        throw std::runtime_error("mine");
                      }),
                      std::runtime_error);
      CHECK(weft::this_fiber::cancellation_requested());
      CHECK(deadline_now() == tp);
      // A deadline_exceeded of a deadline set inside leaves as it is.
      CHECK(code_of([] {
              weft::shielded(
                  [] { weft::with_timeout(1ms, [] { weft::this_fiber::sleep_for(60s); }); });
            }) == kDeadline);
      CHECK(deadline_now() == tp);
      CHECK(code_of([] { weft::this_fiber::yield(); }) == kDeadline);
    });
  });
}

TEST_CASE("shields nest with each other and with deadlines", "[shield]") {
  on_each([] {
    const auto past = clock_type::now() - 1h;
    weft::with_deadline(past, [&] {
      weft::shielded([&] {
        const auto tp = clock_type::now() + 1h;
        weft::with_deadline(tp, [&] {
          CHECK(deadline_now() == tp);
          weft::shielded([] {
            CHECK_FALSE(deadline_now().has_value());
            weft::shielded([] { CHECK_FALSE(deadline_now().has_value()); });
            CHECK_FALSE(deadline_now().has_value());  // the inner shield's end changes nothing
            CHECK_NOTHROW(weft::this_fiber::sleep_for(1ms));
          });
          CHECK(deadline_now() == tp);
        });
        CHECK_FALSE(deadline_now().has_value());
        CHECK_FALSE(weft::this_fiber::cancellation_requested());
      });
      CHECK(deadline_now() == past);
      CHECK(weft::this_fiber::cancellation_requested());
    });
    CHECK_FALSE(deadline_now().has_value());
  });
}

TEST_CASE("a cancellation racing with the shield's start never ends the shielded wait",
          "[shield]") {
  const unsigned threads = GENERATE(2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  ex.run([] {
    int lost = 0;
    for (int i = 0; i < 300; ++i) {
      weft::channel<int> ch(1);
      std::atomic<int> got{0};
      {
        weft::task_group g;
        g.spawn([&] {
          spin(i % 5);
          // A cancellation that lands before, during or after the shield's start: only a
          // wait outside it may throw (and the group absorbs that).
          got = weft::shielded([&] { return *ch.recv(); });
        });
        spin(i % 7);
        g.cancel();
        if (i % 3 == 0) weft::this_fiber::sleep_for(100us);  // let the recv park, sometimes
        ch.send(i + 1);
        g.wait();
      }
      if (got != i + 1) ++lost;
    }
    CHECK(lost == 0);
  });
}
