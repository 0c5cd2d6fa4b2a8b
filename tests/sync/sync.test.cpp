// Tests of weft::mutex, condition_variable and semaphore (API.md "Synchronisation between
// fibers"): exclusion while holders migrate, ownership, timeouts, cancellation that never
// loses a notification or a permit.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <weft/weft.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using test::code_of;
using weft::errc;

static_assert(!std::is_copy_constructible_v<weft::mutex>);
static_assert(!std::is_copy_constructible_v<weft::condition_variable>);
static_assert(!std::is_copy_constructible_v<weft::semaphore>);

namespace {

constexpr int kInvalid = static_cast<int>(errc::invalid_argument);
constexpr int kDeadline = static_cast<int>(errc::deadline_exceeded);
constexpr int kCancelled = static_cast<int>(errc::cancelled);

}  // namespace

TEST_CASE("a weft::mutex excludes while its holders yield and migrate between workers", "[sync]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  weft::mutex m;
  long counter = 0;  // guarded by m
  int inside = 0;    // guarded by m: must never be seen above 1
  std::atomic<int> overlaps{0};
  std::atomic<int> moved{0};
  ex.run([&] {
    weft::task_group g;
    for (int f = 0; f < 50; ++f) {
      g.spawn([&] {
        for (int i = 0; i < 200; ++i) {
          std::lock_guard<weft::mutex> lk(m);
          if (++inside != 1) ++overlaps;
          const auto before = std::this_thread::get_id();
          if (i % 10 == 0) weft::this_fiber::yield();  // held across a switch
          if (std::this_thread::get_id() != before) ++moved;
          ++counter;
          --inside;
        }
      });
    }
    g.wait();
  });
  CHECK(overlaps == 0);
  CHECK(counter == 50 * 200);
}

TEST_CASE("a mutex held by a fiber is unlocked from whichever worker it runs on", "[sync]") {
  weft::executor ex(2);
  weft::mutex m("m");
  ex.run([&] {
    m.lock();
    // Try to move: yield until running on another thread (or give up: the point is the unlock).
    const auto first = std::this_thread::get_id();
    for (int i = 0; i < 100 && std::this_thread::get_id() == first; ++i) {
      weft::spawn([] {
        const auto until = std::chrono::steady_clock::now() + 1ms;
        while (std::chrono::steady_clock::now() < until) {
        }
      });
      weft::this_fiber::yield();
    }
    m.unlock();
  });
  CHECK(m.try_lock());
  m.unlock();
}

TEST_CASE("unlock() by anyone but the holder throws invalid_argument", "[sync]") {
  weft::executor ex(2);
  weft::mutex m("accounts");
  CHECK(code_of([&] { m.unlock(); }) == kInvalid);  // nobody holds it
  CHECK(test::message_of([&] { m.unlock(); }).find("'accounts'") != std::string::npos);
  m.lock();  // held by this plain thread
  CHECK(ex.run([&] { return code_of([&] { m.unlock(); }); }) == kInvalid);
  CHECK_FALSE(m.try_lock());
  m.unlock();
}

TEST_CASE("try_lock_for gives up at its timeout; lock is not a cancellation point", "[sync]") {
  weft::executor ex(2);
  weft::mutex m("busy");
  m.lock();
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(ex.run([&] { return m.try_lock_for(30ms); }));
  CHECK(std::chrono::steady_clock::now() - start >= 30ms);
  CHECK_FALSE(m.try_lock_until(std::chrono::system_clock::now() + 5ms));
  // A fiber whose deadline passes while it waits for the lock still gets it.
  auto waiter = ex.spawn([&] {
    weft::with_timeout(10ms, [&] {
      m.lock();
      m.unlock();
    });
    return weft::this_fiber::cancellation_requested();
  });
  REQUIRE(test::eventually([&] { return test::parked_on(ex, "mutex busy: lock"); }));
  std::this_thread::sleep_for(30ms);
  m.unlock();
  CHECK_FALSE(waiter.get());  // the deadline scope is over once with_timeout returned
}

TEST_CASE("a long waiter gets the mutex handed to it, not stolen by newcomers", "[sync]") {
  // One fiber relocks the mutex in a tight loop; a second waits for it. Without the hand-off
  // the looping fiber (on the other worker) could win every time.
  weft::executor ex(2);
  weft::mutex m;
  std::atomic<bool> got{false};
  auto hog = ex.spawn([&] {
    while (!got.load()) {
      std::lock_guard<weft::mutex> lk(m);
      const auto until = std::chrono::steady_clock::now() + 50us;
      while (std::chrono::steady_clock::now() < until) {
      }
    }
  });
  auto waiter = ex.spawn([&] {
    weft::this_fiber::sleep_for(5ms);
    std::lock_guard<weft::mutex> lk(m);
    got = true;
  });
  waiter.get();
  hog.get();
  CHECK(got);
}

TEST_CASE("waiters woken to compete keep the queue moving when they lose or time out", "[sync]") {
  // unlock() wakes one waiter and no other until that one has tried again (kWoken). Here it
  // often loses to a fiber that barges in, or its try_lock_for times out meanwhile; a woken
  // waiter that never cleared the mark would leave every later unlock() waking nobody, and
  // the others would wait forever (the test would hang, not fail).
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  weft::mutex m("contended");
  long counter = 0;  // guarded by m
  constexpr int kRounds = 300;
  std::atomic<long> timeouts{0};
  auto plain = [&] {
    for (int i = 0; i < kRounds; ++i) {
      std::lock_guard<weft::mutex> lk(m);
      ++counter;
    }
  };
  std::thread t1(plain), t2(plain);
  ex.run([&] {
    weft::task_group g;
    for (int f = 0; f < 20; ++f) {
      g.spawn([&] {
        for (int i = 0; i < kRounds; ++i) {
          std::lock_guard<weft::mutex> lk(m);
          ++counter;
          if (i % 7 == 0) weft::this_fiber::yield();  // held across a switch: others queue
        }
      });
      g.spawn([&] {
        for (int i = 0; i < kRounds;) {
          if (!m.try_lock_for(100us)) {
            ++timeouts;
            continue;
          }
          ++counter;
          ++i;
          m.unlock();
        }
      });
    }
    g.wait();
  });
  t1.join();
  t2.join();
  INFO("timed out tries: " << timeouts.load());
  CHECK(counter == (40 + 2) * kRounds);
  CHECK(m.try_lock());  // nothing left behind in the mutex's state
  m.unlock();
}

TEST_CASE("condition_variable: wait, notify_one, notify_all, timeouts", "[sync]") {
  weft::executor ex(2);
  weft::mutex m;
  weft::condition_variable cv("ready");
  int value = 0;
  std::vector<weft::task<int>> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.push_back(ex.spawn([&] {
      std::unique_lock<weft::mutex> lk(m);
      cv.wait(lk, [&] { return value != 0; });
      return value;
    }));
  }
  REQUIRE(
      test::eventually([&] { return test::parked_on(ex, "condition_variable ready: wait", 3); }));
  {
    std::lock_guard<weft::mutex> lk(m);
    value = 4;
  }
  cv.notify_all();
  for (auto& w : waiters)
    CHECK(w.get() == 4);
  // wait_for returns pred() at its own timeout.
  CHECK_FALSE(ex.run([&] {
    std::unique_lock<weft::mutex> lk(m);
    return cv.wait_for(lk, 20ms, [] { return false; });
  }));
  // A notification from a plain thread wakes a fiber.
  bool flag = false;
  auto one = ex.spawn([&] {
    std::unique_lock<weft::mutex> lk(m);
    return cv.wait_for(lk, 30s, [&] { return flag; });
  });
  REQUIRE(test::eventually([&] { return test::parked_on(ex, "condition_variable ready: wait"); }));
  {
    std::lock_guard<weft::mutex> lk(m);
    flag = true;
  }
  cv.notify_one();
  CHECK(one.get());
}

TEST_CASE("a condition-variable wait past its deadline throws with the lock held", "[sync]") {
  weft::executor ex(1);
  weft::mutex m;
  weft::condition_variable cv;
  const int code = ex.run([&] {
    std::unique_lock<weft::mutex> lk(m);
    const int c = code_of([&] { weft::with_timeout(20ms, [&] { cv.wait(lk); }); });
    return lk.owns_lock() && !m.try_lock() ? c : -1;
  });
  CHECK(code == kDeadline);
  // A deadline that comes before wait_for's own timeout throws; a later one does not.
  CHECK(ex.run([&] {
    std::unique_lock<weft::mutex> lk(m);
    return code_of(
        [&] { weft::with_timeout(10ms, [&] { cv.wait_for(lk, 10s, [] { return false; }); }); });
  }) == kDeadline);
  CHECK(ex.run([&] {
    std::unique_lock<weft::mutex> lk(m);
    return code_of([&] {
      weft::with_timeout(10s, [&] { return cv.wait_for(lk, 10ms, [] { return false; }); });
    });
  }) == 0);
}

TEST_CASE("notify_one racing deadlines: no notification is lost", "[sync]") {
  // Rounds of ten waiters for tokens, half of them under a deadline of a few microseconds,
  // while a notifier adds ten tokens with one notify_one each. A notification that meets a
  // waiter that gave up goes to the next one, and one that won the race is a normal return: so
  // every waiter without a deadline gets a token (none hangs), and no token disappears.
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  weft::mutex m;
  weft::condition_variable cv;
  int tokens = 0;  // guarded by m
  std::atomic<int> consumed{0}, plain_consumed{0}, gave_up{0};
  for (int round = 0; round < 100; ++round) {
    {
      std::lock_guard<weft::mutex> lk(m);
      tokens = 0;
    }
    consumed = 0;
    plain_consumed = 0;
    ex.run([&] {
      weft::task_group g;
      for (int i = 0; i < 10; ++i) {
        g.spawn([&, i] {
          auto take = [&] {
            std::unique_lock<weft::mutex> lk(m);
            cv.wait(lk, [&] { return tokens > 0; });
            --tokens;
            ++consumed;
          };
          if (i % 2 == 0) {
            take();
            ++plain_consumed;
            return;
          }
          try {
            weft::with_timeout(std::chrono::microseconds((i * 7 + round) % 40), take);
          } catch (const weft::error& e) {
            if (e.code() == errc::deadline_exceeded) ++gave_up;
          }
        });
      }
      g.spawn([&] {
        for (int i = 0; i < 10; ++i) {
          {
            std::lock_guard<weft::mutex> lk(m);
            ++tokens;
          }
          cv.notify_one();
          if (i % 3 == 0) weft::this_fiber::yield();
        }
      });
      g.wait();
    });
    std::lock_guard<weft::mutex> lk(m);
    REQUIRE(plain_consumed == 5);
    REQUIRE(consumed + tokens == 10);
  }
}

TEST_CASE("semaphore: counting, FIFO waiters, misuse", "[sync]") {
  CHECK(code_of([] { weft::semaphore s(-1); }) == kInvalid);
  weft::semaphore s(2, "slots");
  CHECK(code_of([&] { s.release(0); }) == kInvalid);
  CHECK(s.try_acquire());
  CHECK(s.try_acquire());
  CHECK_FALSE(s.try_acquire());
  CHECK_FALSE(s.try_acquire_for(10ms));
  weft::executor ex(2);
  std::vector<int> order;  // written by each waiter after it got its permit, one at a time
  weft::mutex om;
  std::vector<weft::task<void>> waiters;
  for (int i = 0; i < 4; ++i) {
    waiters.push_back(ex.spawn([&, i] {
      s.acquire();
      std::lock_guard<weft::mutex> lk(om);
      order.push_back(i);
    }));
    REQUIRE(
        test::eventually([&] { return test::parked_on(ex, "semaphore slots: acquire", i + 1); }));
  }
  for (int i = 0; i < 4; ++i) {
    s.release();
    REQUIRE(test::eventually([&] {
      std::lock_guard<weft::mutex> lk(om);
      return order.size() == static_cast<std::size_t>(i + 1);
    }));
  }
  for (auto& w : waiters)
    w.get();
  CHECK(order == std::vector<int>{0, 1, 2, 3});
  CHECK(s.available() == 0);
  s.release(3);
  CHECK(s.available() == 3);
}

TEST_CASE("semaphore permits racing deadlines are never lost", "[sync]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  weft::semaphore s(0);
  std::atomic<int> got{0}, gave_up{0};
  constexpr int kWaiters = 2000;
  ex.run([&] {
    weft::task_group g;
    for (int i = 0; i < kWaiters; ++i) {
      g.spawn([&, i] {
        try {
          weft::with_timeout(std::chrono::microseconds(i % 60), [&] { s.acquire(); });
          ++got;
        } catch (const weft::error& e) {
          if (e.code() == errc::deadline_exceeded) ++gave_up;
        }
      });
      if (i % 2 == 0) g.spawn([&] { s.release(); });
    }
    g.wait();
  });
  CHECK(got + gave_up == kWaiters);
  // Every permit released was taken or is still there.
  CHECK(got + s.available() == kWaiters / 2);
  // A cancelled acquire throws cancelled.
  CHECK(ex.run([&] {
    weft::task_group g;
    std::atomic<int> code{0};
    g.spawn([&] {
      for (;;) {
        try {
          s.acquire();
        } catch (const weft::error& e) {
          code = e.code().value();
          throw;
        }
      }
    });
    weft::this_fiber::sleep_for(5ms);
    g.cancel();
    g.wait();
    return code.load();
  }) == kCancelled);
}

TEST_CASE("a waiter may destroy the object as soon as its wait returns", "[sync]") {
  // The reply-channel / completion-semaphore pattern: the waker must not touch the object once
  // the waiter can run (the sanitizer build catches a late touch).
  weft::executor ex(2);
  for (int round = 0; round < 300; ++round) {
    auto* ch = new weft::channel<int>;
    auto* sem = new weft::semaphore(0);
    auto* m = new weft::mutex;
    auto* cvm = new weft::mutex;
    auto* cv = new weft::condition_variable;
    bool flag = false;  // guarded by *cvm
    m->lock();          // held by this thread until the fiber waits for it
    auto waiter = ex.spawn([&] {
      ch->recv();
      delete ch;
      sem->acquire();
      delete sem;
      {
        std::unique_lock<weft::mutex> lk(*cvm);
        cv->wait(lk, [&] { return flag; });
      }
      delete cv;
      delete cvm;
      m->lock();
      m->unlock();
      delete m;
    });
    ch->send(1);
    sem->release();
    {
      // The fiber deletes cv once it passed its wait, which it can only do holding cvm: set
      // and notify under cvm, as the standard asks of a condition variable's destruction.
      std::lock_guard<weft::mutex> lk(*cvm);
      flag = true;
      cv->notify_one();
    }
    m->unlock();
    waiter.get();
  }
}

TEST_CASE(
    "a condition-variable wait with a lock that does not hold its mutex leaves nothing behind",
    "[sync]") {
  weft::mutex m;
  weft::condition_variable cv;
  std::unique_lock<weft::mutex> lk(m, std::adopt_lock);  // claims to own m, does not
  CHECK(code_of([&] { cv.wait(lk); }) == kInvalid);
  lk.release();
  cv.notify_one();  // must not find a node of the failed wait
  cv.notify_all();
}

TEST_CASE("unlock() by a later fiber that reuses the holder's record is refused", "[sync]") {
  weft::executor ex(1);
  weft::mutex m;
  ex.run([&] { m.lock(); });  // ends holding it
  // With one worker the next fiber likely runs on the same stack, with the same record.
  CHECK(ex.run([&] { return code_of([&] { m.unlock(); }); }) == kInvalid);
}
