// Tests of weft::channel (API.md "Synchronisation between fibers"): rendezvous and buffered
// hand-over, FIFO order, close, the never-waiting forms, cancellation with the exactly-once
// rule, plain threads, and what dump() says about a waiting fiber.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <weft/weft.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using test::code_of;
using weft::errc;

static_assert(!std::is_copy_constructible_v<weft::channel<int>>);
static_assert(!std::is_move_constructible_v<weft::channel<int>>);
static_assert(!std::is_copy_assignable_v<weft::channel<int>>);

namespace {

constexpr int kClosed = static_cast<int>(errc::channel_closed);
using test::kCancelled;
using test::kDeadline;

// on_each() runs body on a pool fiber of 1, 2 and 4 workers, and on a plain thread.
template <class F>
void on_each(F body) {
  const unsigned threads = GENERATE(0u, 1u, 2u, 4u);
  CAPTURE(threads);
  if (threads == 0) {
    weft::executor helpers(2);  // the plain thread's partners run here
    body(helpers);
  } else {
    weft::executor ex(threads);
    ex.run([&] { body(ex); });
  }
}

}  // namespace

TEST_CASE("an unbuffered channel hands each value from a sender to a receiver", "[channel]") {
  on_each([](weft::executor& ex) {
    weft::channel<int> ch;
    CHECK(ch.capacity() == 0);
    CHECK(ch.size() == 0);
    auto producer = ex.spawn([&] {
      for (int i = 0; i < 1000; ++i)
        ch.send(i);
      ch.close();
    });
    int expected = 0;
    while (std::optional<int> v = ch.recv()) {
      CHECK(*v == expected);
      ++expected;
    }
    CHECK(expected == 1000);
    producer.get();
  });
}

TEST_CASE("an unbuffered send waits until a receiver took the value", "[channel]") {
  weft::executor ex(2);
  weft::channel<int> ch(0, "handoff");
  std::atomic<bool> sent{false};
  auto sender = ex.spawn([&] {
    ch.send(7);
    sent = true;
  });
  REQUIRE(test::eventually_here([&] { return test::parked_on(ex, "channel handoff: send"); }));
  CHECK_FALSE(sent.load());
  CHECK(ch.size() == 0);
  CHECK(ch.recv() == 7);
  sender.get();
  CHECK(sent.load());
}

TEST_CASE("a buffered channel keeps values in order up to its capacity", "[channel]") {
  on_each([](weft::executor& ex) {
    weft::channel<std::string> ch(3, "buf");
    ch.send("a");
    ch.send("b");
    ch.send("c");
    CHECK(ch.size() == 3);
    CHECK_FALSE(ch.try_send(std::string("d")));
    // A fourth send waits for room; it lands behind the three.
    auto late = ex.spawn([&] { ch.send("d"); });
    CHECK(ch.recv() == "a");
    late.get();
    CHECK(ch.recv() == "b");
    CHECK(ch.recv() == "c");
    CHECK(ch.recv() == "d");
    CHECK(ch.size() == 0);
    CHECK_FALSE(ch.try_recv().has_value());
  });
}

TEST_CASE("waiting senders are served in the order they started waiting", "[channel]") {
  weft::executor ex(2);
  weft::channel<int> ch(0, "order");
  std::vector<weft::task<void>> senders;
  for (int i = 0; i < 5; ++i) {
    senders.push_back(ex.spawn([&ch, i] { ch.send(i); }));
    // Each one waits before the next starts: their order is the order of the waits.
    REQUIRE(test::eventually_here([&] {
      int n = 0;
      for (const auto& f : ex.fibers())
        n += f.waiting_on == "channel order: send";
      return n == i + 1;
    }));
  }
  for (int i = 0; i < 5; ++i)
    CHECK(ch.recv() == i);
  for (auto& s : senders)
    s.get();
}

TEST_CASE(
    "close wakes every waiter: senders throw channel_closed, receivers drain then get nullopt",
    "[channel]") {
  on_each([](weft::executor& ex) {
    weft::channel<int> ch(2, "c");
    ch.send(1);
    ch.send(2);
    auto blocked_sender = ex.spawn([&] { return code_of([&] { ch.send(3); }); });
    weft::channel<int> empty;
    auto blocked_receiver = ex.spawn([&] { return empty.recv(); });
    REQUIRE(test::eventually_here([&] { return test::parked_on(ex, "channel c: send"); }));
    REQUIRE(test::eventually_here([&] { return test::parked_on(ex, "channel: recv"); }));
    ch.close();
    ch.close();  // idempotent
    empty.close();
    CHECK(ch.closed());
    CHECK(blocked_sender.get() == kClosed);
    CHECK_FALSE(blocked_receiver.get().has_value());
    CHECK(ch.recv() == 1);
    CHECK(ch.recv() == 2);
    CHECK_FALSE(ch.recv().has_value());
    CHECK_FALSE(ch.try_send(4));
    CHECK(code_of([&] { ch.send(5); }) == kClosed);
    const std::string what = test::message_of([&] { ch.send(5); });
    CHECK(what.find("'c'") != std::string::npos);
  });
}

TEST_CASE("try_send and try_recv never wait and leave the value untouched when they fail",
          "[channel]") {
  weft::executor ex(2);
  weft::channel<std::unique_ptr<int>> ch(0, "u");
  auto v = std::make_unique<int>(5);
  CHECK_FALSE(ch.try_send(std::move(v)));  // nobody receives
  REQUIRE(v != nullptr);
  CHECK(*v == 5);
  CHECK_FALSE(ch.try_recv().has_value());
  // Go's rule: on an unbuffered channel they pair with a waiting partner.
  auto receiver = ex.spawn([&] { return ch.recv(); });
  REQUIRE(test::eventually_here([&] { return test::parked_on(ex, "channel u: recv"); }));
  CHECK(ch.try_send(std::move(v)));
  CHECK(v == nullptr);
  CHECK(**receiver.get() == 5);
  auto sender = ex.spawn([&] { ch.send(std::make_unique<int>(9)); });
  REQUIRE(test::eventually_here([&] { return test::parked_on(ex, "channel u: send"); }));
  auto got = ch.try_recv();
  REQUIRE(got.has_value());
  CHECK(**got == 9);
  sender.get();
  // A copy is sent from an lvalue; the lvalue stays.
  weft::channel<std::string> s(1);
  std::string text = "kept";
  CHECK(s.try_send(text));
  CHECK(text == "kept");
  CHECK_FALSE(s.try_send(text));
  CHECK(s.recv() == "kept");
}

TEST_CASE("a recv under a deadline ends at the deadline and takes nothing", "[channel]") {
  on_each([](weft::executor&) {
    weft::channel<int> ch(0, "slow");
    const auto start = std::chrono::steady_clock::now();
    CHECK(code_of([&] { weft::with_timeout(50ms, [&] { return ch.recv(); }); }) == kDeadline);
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 50ms);
    CHECK(took < 10s);  // the bug this guards against waited for a value forever
    // A send under a deadline likewise delivers nothing.
    CHECK(code_of([&] { weft::with_timeout(20ms, [&] { ch.send(1); }); }) == kDeadline);
    CHECK_FALSE(ch.try_recv().has_value());
  });
}

TEST_CASE("a cancelled task group ends its children's channel waits", "[channel]") {
  weft::executor ex(2);
  weft::channel<int> jobs(4, "jobs");
  std::atomic<int> ended{0};
  ex.run([&] {
    weft::task_group g;
    for (int i = 0; i < 3; ++i) {
      g.spawn([&] {
        try {
          while (jobs.recv()) {
          }
        } catch (const weft::error& e) {
          if (e.code() == errc::cancelled) ++ended;
          throw;
        }
      });
    }
    while (!test::parked_on(ex, "channel jobs: recv"))
      weft::this_fiber::sleep_for(1ms);
    g.cancel();
    g.wait();
  });
  CHECK(ended == 3);
  // Nothing was consumed by the cancelled receivers.
  jobs.send(1);
  CHECK(jobs.recv() == 1);
}

TEST_CASE("an operation that can take effect at once does so in a cancelled fiber", "[channel]") {
  weft::executor ex(1);
  weft::channel<int> ch(1);
  ch.send(3);
  ex.run([&] {
    weft::task_group g;
    g.spawn([&] {
      CHECK(weft::this_fiber::cancellation_requested());
      CHECK(ch.recv() == 3);                             // ready: taken
      CHECK(code_of([&] { ch.recv(); }) == kCancelled);  // would wait: throws
      ch.send(4);                                        // room: sent
    });
    g.cancel();
    CHECK(code_of([&] { g.wait(); }) == 0);
  });
  CHECK(ch.try_recv() == 4);
}

TEST_CASE("a hand-over racing a deadline either delivers or leaves the value, never both",
          "[channel]") {
  // Thousands of rounds of a receiver whose deadline passes just as a sender offers a value:
  // each value is received exactly once -- by the receiver whose recv returned it, or later
  // by the clean-up recv -- whoever won each race.
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  constexpr int kRounds = 2000;
  weft::channel<int> ch(GENERATE(0u, 1u));
  std::atomic<int> received{0}, timed_out{0}, sent{0};
  auto seen = std::make_unique<std::atomic<int>[]>(kRounds);
  ex.run([&] {
    weft::task_group g;
    for (int i = 0; i < kRounds; ++i) {
      g.spawn([&, i] {
        try {
          std::optional<int> v =
              weft::with_timeout(std::chrono::microseconds(i % 50), [&] { return ch.recv(); });
          ++seen[static_cast<std::size_t>(*v)];
          ++received;
        } catch (const weft::error& e) {
          if (e.code() == errc::deadline_exceeded) ++timed_out;
        }
      });
      g.spawn([&, i] {
        if (ch.try_send(i)) ++sent;
      });
    }
    g.wait();
  });
  int leftovers = 0;
  while (std::optional<int> v = ch.try_recv()) {
    ++seen[static_cast<std::size_t>(*v)];
    ++leftovers;
  }
  CHECK(received + timed_out == kRounds);
  CHECK(received + leftovers == sent);
  int twice = 0;
  for (int i = 0; i < kRounds; ++i)
    twice += seen[static_cast<std::size_t>(i)] > 1;
  CHECK(twice == 0);
}

TEST_CASE("a plain thread waits on a channel and honours its deadline", "[channel]") {
  weft::executor ex(1);
  weft::channel<int> ch;
  auto sender = ex.spawn([&] {
    weft::this_fiber::sleep_for(20ms);
    ch.send(11);
  });
  CHECK(ch.recv() == 11);  // blocks the thread until the fiber sends
  sender.get();
  CHECK(code_of([&] { weft::with_timeout(20ms, [&] { ch.recv(); }); }) == kDeadline);
  // Fibers wake a plain thread's send too.
  auto receiver = ex.spawn([&] { return ch.recv(); });
  ch.send(12);
  CHECK(receiver.get() == 12);
}

TEST_CASE("dump() names the channel and the operation a fiber waits on", "[channel]") {
  weft::executor ex(1);
  weft::channel<int> jobs(0, "jobs");
  auto r = ex.spawn([&] { return jobs.recv(); });
  REQUIRE(test::eventually_here([&] { return test::parked_on(ex, "channel jobs: recv"); }));
  std::ostringstream out;
  ex.dump(out);
  CHECK(out.str().find("suspended (channel jobs: recv)") != std::string::npos);
  jobs.send(1);
  CHECK(r.get() == 1);
  // A fiber that runs or is ready waits on nothing.
  for (const weft::fiber_info& f : ex.fibers())
    CHECK(f.waiting_on.empty());
}

TEST_CASE("values are destroyed with the channel and never leak", "[channel]") {
  {
    weft::channel<test::counted_value> ch(4);
    ch.send(test::counted_value(1));
    ch.send(test::counted_value(2));
    CHECK(test::counted_value::alive == 2);
    CHECK(ch.recv()->value == 1);
    CHECK(test::counted_value::alive == 1);
  }
  CHECK(test::counted_value::alive == 0);
}

TEST_CASE("a receiver woken by a fiber that then computes runs on another worker meanwhile",
          "[channel]") {
  // The woken fiber is the waker's worker's run_next; an idle worker must take it when that
  // worker does not get to it (liveness: no worker sleeps while a fiber is ready).
  weft::executor ex(2);
  weft::channel<int> ch(0, "handoff");
  std::atomic<bool> computing{false}, stop{false};
  std::atomic<std::thread::id> sender_thread{};
  auto receiver = ex.spawn([&] {
    ch.recv();
    const bool overlapped = computing.load();  // the sender still computes
    const bool elsewhere = sender_thread.load() != std::this_thread::get_id();
    stop = true;
    return overlapped && elsewhere;
  });
  REQUIRE(test::eventually_here([&] { return test::parked_on(ex, "channel handoff: recv"); }));
  auto sender = ex.spawn([&] {
    // Set before the hand-over: the receiver may run on the other worker at once.
    sender_thread = std::this_thread::get_id();
    computing = true;
    ch.send(1);  // the receiver waits: this hands the value over and wakes it
    // Compute without a pause until the receiver ran, or 20 s (the failure).
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (!stop.load() && std::chrono::steady_clock::now() < until) {
    }
    computing = false;
  });
  CHECK(receiver.get());
  sender.get();
}
