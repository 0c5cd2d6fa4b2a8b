// Tests of deadlines (API.md "Deadlines"): with_deadline, with_timeout, this_fiber::deadline.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

#include "stuck_worker.hpp"
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

}  // namespace

static_assert(static_cast<int>(errc::deadline_exceeded) == 10);

TEST_CASE("with_deadline runs f on the caller and returns its result or its exception",
          "[deadline]") {
  on_each([] {
    CHECK(weft::with_timeout(
              1s, [](int a, int b) { return a + b; }, 2, 3) == 5);
    int x = 0;
    int& r = weft::with_timeout(1s, [&x]() -> int& { return x; });
    CHECK(&r == &x);
    auto moved = weft::with_deadline(
        clock_type::now() + 1s, [](std::unique_ptr<int> p) { return p; }, std::make_unique<int>(7));
    CHECK(*moved == 7);
    CHECK_THROWS_AS(weft::with_timeout(1s, [] { throw std::runtime_error("mine"); }),
                    std::runtime_error);
    CHECK_FALSE(deadline_now().has_value());  // and nothing left behind by either
  });
}

TEST_CASE("deadline() reports the earliest deadline in force, and only inside", "[deadline]") {
  on_each([] {
    CHECK_FALSE(deadline_now().has_value());
    const auto outer = clock_type::now() + 10s;
    weft::with_deadline(outer, [&] {
      CHECK(deadline_now() == outer);
      weft::with_deadline(outer + 5s, [&] { CHECK(deadline_now() == outer); });  // later: no effect
      weft::with_deadline(outer - 5s, [&] { CHECK(deadline_now() == outer - 5s); });
      CHECK(deadline_now() == outer);  // the inner one is gone again
      weft::with_timeout(std::chrono::hours::max(), [&] { CHECK(deadline_now() == outer); });
    });
    CHECK_FALSE(deadline_now().has_value());
    weft::with_timeout(std::chrono::hours::max(), [] { CHECK_FALSE(deadline_now().has_value()); });
    CHECK_FALSE(weft::this_fiber::cancellation_requested());
  });
}

TEST_CASE("a sleep ends at the deadline with deadline_exceeded, never early", "[deadline]") {
  on_each([] {
    const auto start = clock_type::now();
    const auto tp = start + 30ms;
    CHECK(code_of([&] { weft::with_deadline(tp, [] { weft::this_fiber::sleep_for(60s); }); }) ==
          kDeadline);
    const auto end = clock_type::now();
    CHECK(end >= tp);
    CHECK(end - start < 20s);  // woken at the deadline, not at the end of the sleep
    // The caller is untouched afterwards.
    CHECK_FALSE(weft::this_fiber::cancellation_requested());
    weft::this_fiber::sleep_for(1ms);
    weft::this_fiber::yield();
  });
}

TEST_CASE("a wait on a task ends at the deadline; the task itself runs on", "[deadline]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
  ex.run([] {
    std::atomic<bool> release{false};
    auto t = weft::spawn([&] {  // spawned outside the deadline: not under it
      while (!release.load())
        weft::this_fiber::sleep_for(1ms);
      return 42;
    });
    CHECK(code_of([&] { weft::with_timeout(20ms, [&] { return t.get(); }); }) == kDeadline);
    CHECK(code_of([&] { weft::with_timeout(20ms, [&] { t.wait(); }); }) == kDeadline);
    // A wait_for whose own limit comes first just returns false.
    CHECK_FALSE(weft::with_timeout(10s, [&] { return t.wait_for(5ms); }));
    CHECK(t.valid());
    release = true;
    CHECK(t.get() == 42);
  });
}

TEST_CASE("on a plain thread the waits on tasks are cancellation points", "[deadline]") {
  weft::executor ex(2);
  std::atomic<bool> release{false};
  auto t = ex.spawn([&] {
    while (!release.load())
      weft::this_fiber::sleep_for(1ms);
  });
  const auto start = clock_type::now();
  CHECK(code_of([&] { weft::with_timeout(20ms, [&] { t.get(); }); }) == kDeadline);
  CHECK(clock_type::now() - start >= 20ms);
  CHECK(code_of([&] {
          weft::with_timeout(20ms, [&] {
            weft::task_group g(ex);
            g.spawn([] { weft::this_fiber::sleep_for(60s); });
            g.wait();
          });
        }) == kDeadline);
  release = true;
  t.get();
}

TEST_CASE("past the deadline cancellation_requested() is true and throw_if_cancelled throws",
          "[deadline]") {
  on_each([] {
    weft::with_timeout(5ms, [] {
      CHECK_FALSE(weft::this_fiber::cancellation_requested());
      CHECK_NOTHROW(weft::this_fiber::throw_if_cancelled());
      // Running, not waiting, when the deadline passes: seen at the next check.
      const auto until = clock_type::now() + 20ms;
      while (clock_type::now() < until) {
      }
      CHECK(weft::this_fiber::cancellation_requested());
      CHECK(code_of([] { weft::this_fiber::throw_if_cancelled(); }) == kDeadline);
      CHECK(code_of([] { weft::this_fiber::yield(); }) == kDeadline);
      CHECK(code_of([] { weft::this_fiber::sleep_for(0s); }) == kDeadline);
    });
    CHECK_FALSE(weft::this_fiber::cancellation_requested());
  });
}

TEST_CASE("a deadline in the past still runs f; its first cancellation point throws",
          "[deadline]") {
  on_each([] {
    int ran = 0;
    CHECK(code_of([&] {
            weft::with_deadline(clock_type::now() - 1h, [&] {
              ++ran;
              weft::this_fiber::sleep_for(1h);
              ++ran;
            });
          }) == kDeadline);
    CHECK(ran == 1);
    CHECK(weft::with_deadline(clock_type::time_point::min(), [] { return 5; }) == 5);
    CHECK(code_of([&] {
            weft::with_timeout(-5s, [] { weft::this_fiber::throw_if_cancelled(); });
          }) == kDeadline);
  });
}

TEST_CASE("fibers spawned inside inherit the deadline, and keep it after with_deadline returns",
          "[deadline]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
  ex.run([&ex] {
#if defined(__SANITIZE_THREAD__)
    // Far enough for the children to spawn and wait for a grandchild before it passes, even
    // under ThreadSanitizer on a loaded machine (50 ms was not: t.get() threw).
    const auto tp = clock_type::now() + 1s;
#else
    const auto tp = clock_type::now() + 50ms;
#endif
    // The children run on several workers at once: they count what is wrong, and this fiber
    // checks it (Catch is not thread-safe).
    std::atomic<int> wrong{0};
    std::vector<weft::task<int>> tasks;
    weft::with_deadline(tp, [&] {
      auto child = [tp, &wrong] {
        if (deadline_now() != tp) ++wrong;
        // A grandchild too.
        auto g = weft::spawn([tp] { return deadline_now() == tp; });
        if (!g.get()) ++wrong;
        return code_of([] { weft::this_fiber::sleep_for(60s); });
      };
      tasks.push_back(weft::spawn(child));
      tasks.push_back(ex.spawn(child));
      tasks.push_back(weft::executor::current()->spawn(child));
    });
    CHECK_FALSE(deadline_now().has_value());
    for (auto& t : tasks)
      CHECK(t.get() == kDeadline);
    CHECK(wrong == 0);
    CHECK(clock_type::now() >= tp);
  });
}

TEST_CASE("post and run from a plain thread under a deadline pass it on", "[deadline]") {
  weft::executor ex(2);
  const auto tp = clock_type::now() + 20ms;
  std::atomic<int> posted{0};
  weft::with_deadline(tp, [&] {
    CHECK(ex.run([] { return deadline_now(); }) == tp);
    ex.post([&] { posted = code_of([] { weft::this_fiber::sleep_for(60s); }); });
  });
  ex.join();
  CHECK(posted == kDeadline);
}

TEST_CASE("a task_group never absorbs deadline_exceeded", "[deadline]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
  ex.run([] {
    // The whole group under the deadline: its wait() rethrows deadline_exceeded, and every
    // child saw deadline_exceeded -- the deadline came before the group's own cancellation.
    std::atomic<int> deadline_seen{0};
    CHECK(code_of([&] {
            weft::with_timeout(20ms, [&] {
              weft::task_group g;
              for (int i = 0; i < 6; ++i) {
                g.spawn([&] {
                  if (code_of([] { weft::this_fiber::sleep_for(60s); }) == kDeadline) {
                    ++deadline_seen;
                  }
                  throw weft::error(errc::deadline_exceeded, "rethrown by the test");
                });
              }
              g.wait();  // throws; ~task_group then still waits for all six
            });
          }) == kDeadline);
    CHECK(deadline_seen == 6);

    // A group outside the deadline, one child under its own: the group fails with it and
    // cancels the others (which see cancelled: no deadline of theirs passed).
    std::atomic<int> cancelled_seen{0};
    weft::task_group g;
    g.spawn([] { weft::with_timeout(5ms, [] { weft::this_fiber::sleep_for(60s); }); });
    for (int i = 0; i < 3; ++i) {
      g.spawn([&] {
        if (code_of([] { weft::this_fiber::sleep_for(60s); }) == kCancelled) ++cancelled_seen;
        weft::this_fiber::throw_if_cancelled();
      });
    }
    CHECK(code_of([&] { g.wait(); }) == kDeadline);
    CHECK(cancelled_seen == 3);
  });
}

TEST_CASE("nothing outside with_deadline is touched: caller, siblings, parent", "[deadline]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
  ex.run([] {
    weft::task_group g;
    std::atomic<int> sibling_done{0};
    g.spawn([&] {
      weft::this_fiber::sleep_for(80ms);
      ++sibling_done;
    });
    g.spawn([] {
      CHECK(code_of([] { weft::with_timeout(5ms, [] { weft::this_fiber::sleep_for(60s); }); }) ==
            kDeadline);
      weft::this_fiber::sleep_for(10ms);  // and this fiber itself goes on normally
    });
    g.wait();
    CHECK(sibling_done == 1);
    CHECK_FALSE(weft::this_fiber::cancellation_requested());
  });
}

TEST_CASE("nested deadlines: the earliest wins, the outer one stays in force", "[deadline]") {
  on_each([] {
    const auto start = clock_type::now();
    CHECK(code_of([&] {
            weft::with_timeout(40ms, [&] {
              // An inner, earlier deadline fails only its own part.
              CHECK(code_of([] {
                      weft::with_timeout(5ms, [] { weft::this_fiber::sleep_for(60s); });
                    }) == kDeadline);
              CHECK_FALSE(weft::this_fiber::cancellation_requested());
              // An inner, later one does not postpone the outer one.
              weft::with_timeout(60s, [] { weft::this_fiber::sleep_for(60s); });
            });
          }) == kDeadline);
    const auto elapsed = clock_type::now() - start;
    CHECK(elapsed >= 40ms);
    CHECK(elapsed < 20s);
  });
}

TEST_CASE("deadline and task_group::cancel: the cause that came first is the error", "[deadline]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
  // The child spins (no cancellation point) while this plain thread cancels its group, so the
  // order of the two causes is fixed by the test, not by the scheduler.
  std::atomic<bool> entered{false};
  std::atomic<bool> go{false};
  std::atomic<int> seen{0};
  std::atomic<int> slept{0};
  auto spin_until_go = [&] {
    entered = true;
    while (!go.load())
      std::this_thread::yield();
  };
  // cancel_when_entered() cancels g once its child spins, lets the child go on, and waits.
  auto cancel_when_entered = [&](weft::task_group& g) {
    while (!entered.load())
      std::this_thread::yield();
    g.cancel();
    go = true;
    g.wait();
  };

  SECTION("the deadline passed before the cancellation") {
    weft::task_group g(ex);
    g.spawn([&] {
      weft::with_deadline(clock_type::now() - 1s, [&] {
        spin_until_go();
        seen = code_of([] { weft::this_fiber::throw_if_cancelled(); });
        slept = code_of([] { weft::this_fiber::sleep_for(60s); });
      });
    });
    cancel_when_entered(g);  // deadline_exceeded was caught by the child: nothing to rethrow
    CHECK(seen == kDeadline);
    CHECK(slept == kDeadline);
  }

  SECTION("the cancellation came before the deadline passed") {
    weft::task_group g(ex);
    g.spawn([&] {
      spin_until_go();
      weft::with_deadline(clock_type::now() + 1ms, [&] {
        const auto until = clock_type::now() + 5ms;
        while (clock_type::now() < until) {
        }
        seen = code_of([] { weft::this_fiber::throw_if_cancelled(); });
        slept = code_of([] { weft::this_fiber::sleep_for(60s); });
      });
    });
    cancel_when_entered(g);
    CHECK(seen == kCancelled);
    CHECK(slept == kCancelled);
  }

  SECTION("a group under a deadline: an earlier failure cancels, the siblings see cancelled") {
    std::atomic<int> cancelled_seen{0};
    CHECK_THROWS_WITH(ex.run([&] {
      weft::with_timeout(60s, [&] {
        weft::task_group g;
        for (int i = 0; i < 4; ++i) {
          g.spawn([&] {
            if (code_of([] { weft::this_fiber::sleep_for(60s); }) == kCancelled) {
              ++cancelled_seen;
            }
            weft::this_fiber::throw_if_cancelled();
          });
        }
        g.spawn([] { throw std::runtime_error("first"); });
        g.wait();
      });
    }),
                      "first");
    CHECK(cancelled_seen == 4);
  }
}

TEST_CASE("10k concurrent deadlines of random length all fire, none early", "[deadline]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
#if defined(__SANITIZE_THREAD__)
  // Each fiber is a thread to ThreadSanitizer, whose runtime (GCC 12) dies past 8128 at once:
  // 3000 fibers (and their children) under TSan.
  constexpr int kFibers = 3000;
#else
  constexpr int kFibers = 10000;
#endif
  std::atomic<int> fired{0};
  std::atomic<int> early{0};
  std::atomic<int> other{0};
  ex.run([&] {
    std::mt19937 rng(1234 + threads);
    std::uniform_int_distribution<int> ms(1, 300);
    weft::task_group g;
    for (int i = 0; i < kFibers; ++i) {
      const auto tp = clock_type::now() + std::chrono::milliseconds(ms(rng));
      g.spawn([&, tp] {
        const int code = code_of([tp] {
          weft::with_deadline(tp, [] {
            // Alternate the ways of waiting: a sleep, a wait on a task, a wait on a group.
            static std::atomic<unsigned> turn{0};
            switch (turn++ % 3) {
              case 0:
                weft::this_fiber::sleep_for(60s);
                break;
              case 1:
                weft::spawn([] { weft::this_fiber::sleep_for(60s); }).get();
                break;
              default: {
                weft::task_group g;
                g.spawn([] { weft::this_fiber::sleep_for(60s); });
                g.wait();
              }
            }
          });
        });
        if (code == kDeadline) {
          ++fired;
          if (clock_type::now() < tp) ++early;
        } else {
          ++other;
        }
      });
    }
  });
  CHECK(fired == kFibers);
  CHECK(early == 0);
  CHECK(other == 0);
}

TEST_CASE("~task_group reports a child's deadline_exceeded only when the group had no deadline",
          "[deadline]") {
  std::atomic<int> reported{0};
  weft::executor_options options;
  options.threads = 2;
  options.on_unhandled_exception = [&](std::exception_ptr) { ++reported; };
  weft::executor ex(options);
  ex.run([] {
    // The group ran out of time and its creator left with the error: nothing more to say.
    CHECK(code_of([] {
            weft::with_timeout(5ms, [] {
              weft::task_group g;
              for (int i = 0; i < 3; ++i)
                g.spawn([] { weft::this_fiber::sleep_for(60s); });
              g.wait();
            });
          }) == kDeadline);
  });
  CHECK(reported == 0);
  ex.run([] {
    // A child's own deadline, never collected by wait(): that is a lost failure.
    weft::task_group g;
    g.spawn([] { weft::with_timeout(1ms, [] { weft::this_fiber::sleep_for(60s); }); });
  });
  CHECK(reported == 1);
}

TEST_CASE("a dropped task that ran out of time is not reported; other failures are", "[deadline]") {
  std::atomic<int> reported{0};
  weft::executor_options options;
  options.threads = 2;
  options.on_unhandled_exception = [&](std::exception_ptr) { ++reported; };
  weft::executor ex(options);
  ex.run([] {
    // The waiter leaves at the deadline and drops the handle; the child ends the same way.
    CHECK(code_of([] {
            weft::with_timeout(5ms,
                               [] { weft::spawn([] { weft::this_fiber::sleep_for(60s); }).get(); });
          }) == kDeadline);
    (void)weft::spawn([] { throw std::runtime_error("lost"); });
  });
  ex.join();
  CHECK(reported == 1);
}

// Liveness (docs/scheduling.md): a deadline fires on time while the worker the fiber parked on
// computes and the other idles (it fired when the computing fiber gave up: 3 s late).
TEST_CASE("a deadline ends a wait on time while its worker computes and another idles",
          "[deadline][liveness]") {
  weft::executor ex(2);
  clock_type::duration late{};
  test::stuck_while(ex, [&] {
    const auto start = clock_type::now();
    CHECK(code_of([] { weft::with_timeout(20ms, [] { weft::this_fiber::sleep_for(1h); }); }) ==
          kDeadline);
    late = clock_type::now() - start - 20ms;
  });
  INFO("woke " << std::chrono::duration_cast<std::chrono::milliseconds>(late).count()
               << " ms late");
  CHECK(late < 400ms);
}
