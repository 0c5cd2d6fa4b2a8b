// Tests of weft::select / try_select (API.md "Synchronisation between fibers"): exactly one
// case takes effect, ready cases are chosen at random, closed channels, cancellation.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <weft/weft.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using test::code_of;
using weft::errc;

namespace {

constexpr int kClosed = static_cast<int>(errc::channel_closed);
constexpr int kDeadline = static_cast<int>(errc::deadline_exceeded);
constexpr int kInvalid = static_cast<int>(errc::invalid_argument);

}  // namespace

TEST_CASE("select takes exactly one ready case and reports which", "[select]") {
  weft::channel<int> a(1), b(1);
  a.send(1);
  b.send(2);
  std::optional<int> from_a, from_b;
  const std::size_t first = weft::select(weft::recv_case(a, from_a), weft::recv_case(b, from_b));
  REQUIRE(first < 2);
  // The other value is still there.
  if (first == 0) {
    CHECK(from_a == 1);
    CHECK_FALSE(from_b.has_value());
    CHECK(b.try_recv() == 2);
  } else {
    CHECK(from_b == 2);
    CHECK_FALSE(from_a.has_value());
    CHECK(a.try_recv() == 1);
  }
}

TEST_CASE("select chooses among ready cases at random, so none starves", "[select]") {
  weft::channel<int> a(1), b(1);
  int counts[2] = {0, 0};
  for (int i = 0; i < 2000; ++i) {
    a.try_send(0);
    b.try_send(1);
    std::optional<int> out;
    ++counts[weft::select(weft::recv_case(a, out), weft::recv_case(b, out))];
  }
  // Each side wins about half the time; 600 of 2000 is more than 8 standard deviations off.
  CHECK(counts[0] > 600);
  CHECK(counts[1] > 600);
}

TEST_CASE("a send_case that does not take effect leaves its value untouched", "[select]") {
  weft::channel<std::string> full(1), ready(1);
  full.send("x");
  std::string v = "mine";
  std::optional<std::string> got;
  ready.send("y");
  // Only the recv can take effect.
  CHECK(weft::select(weft::send_case(full, std::move(v)), weft::recv_case(ready, got)) == 1);
  CHECK(v == "mine");
  CHECK(got == "y");
  CHECK_FALSE(weft::try_select(weft::send_case(full, std::move(v))).has_value());
  CHECK(v == "mine");
  CHECK(weft::try_select(weft::send_case(ready, std::move(v))) == 0u);
  CHECK(ready.recv() == "mine");
}

TEST_CASE("a waiting select is woken by whichever channel is ready first", "[select]") {
  weft::executor ex(2);
  weft::channel<int> a(0, "a"), b(0, "b");
  weft::channel<std::string> out(0, "out");
  auto sel = ex.spawn([&] {
    std::optional<int> x;
    std::string s = "sent";
    const std::size_t i =
        weft::select(weft::recv_case(a, x), weft::recv_case(b, x), weft::send_case(out, s));
    return std::make_pair(i, x);
  });
  REQUIRE(test::eventually([&] { return test::parked_on(ex, "select (3 cases)"); }));
  b.send(5);
  auto [index, value] = sel.get();
  CHECK(index == 1);
  CHECK(value == 5);
  // The other cases were withdrawn: nothing waits on a or out any more.
  CHECK_FALSE(a.try_send(1));
  CHECK_FALSE(out.try_recv().has_value());
}

TEST_CASE("the same channel may appear in several cases of one select", "[select]") {
  weft::executor ex(2);
  weft::channel<int> ch(0, "twice");
  auto sel = ex.spawn([&] {
    std::optional<int> x, y;
    const std::size_t i = weft::select(weft::recv_case(ch, x), weft::recv_case(ch, y));
    return (i == 0 ? x : y).value_or(-1);
  });
  REQUIRE(test::eventually([&] { return test::parked_on(ex, "select (2 cases)"); }));
  ch.send(8);
  CHECK(sel.get() == 8);
  CHECK_FALSE(ch.try_send(9));  // the second case was withdrawn too
}

TEST_CASE("select on closed channels: recv fires with nullopt, send throws", "[select]") {
  weft::channel<int> a, b;
  a.close();
  std::optional<int> x = 3;
  CHECK(weft::select(weft::recv_case(a, x)) == 0);
  CHECK_FALSE(x.has_value());
  b.close();
  CHECK(code_of([&] { weft::select(weft::send_case(b, 1)); }) == kClosed);
  CHECK(code_of([&] { weft::try_select(weft::send_case(b, 1)); }) == kClosed);
  // Closed while waiting.
  weft::executor ex(1);
  weft::channel<int> c(0, "c");
  auto waiting = ex.spawn([&] { return code_of([&] { weft::select(weft::send_case(c, 1)); }); });
  REQUIRE(test::eventually([&] { return test::parked_on(ex, "select (1 case)"); }));
  c.close();
  CHECK(waiting.get() == kClosed);
}

TEST_CASE("select with no cases is a misuse; try_select with none ready is nullopt", "[select]") {
  CHECK(code_of([] { weft::select(); }) == kInvalid);
  weft::channel<int> a;
  std::optional<int> x;
  CHECK_FALSE(weft::try_select(weft::recv_case(a, x)).has_value());
}

TEST_CASE("a select under a deadline ends at it and no case takes effect", "[select]") {
  weft::executor ex(2);
  weft::channel<int> a, b;
  ex.run([&] {
    std::optional<int> x;
    CHECK(code_of([&] {
            weft::with_timeout(
                30ms, [&] { return weft::select(weft::recv_case(a, x), weft::send_case(b, 1)); });
          }) == kDeadline);
  });
  CHECK_FALSE(b.try_recv().has_value());
  CHECK_FALSE(a.try_send(1));
}

TEST_CASE("selects racing senders, receivers and deadlines: every value exactly once", "[select]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  CAPTURE(threads);
  weft::executor ex(threads);
  weft::channel<int> a(0), b(2);
  constexpr int kValues = 3000;
  auto seen = std::make_unique<std::atomic<int>[]>(kValues);
  std::atomic<int> sent{0};
  ex.run([&] {
    weft::task_group g;
    for (int i = 0; i < kValues; ++i) {
      g.spawn([&, i] {
        // A sender offers value i on both channels at once: at most one takes it.
        try {
          weft::with_timeout(std::chrono::microseconds(i % 100), [&] {
            return weft::select(weft::send_case(a, i), weft::send_case(b, i));
          });
          ++sent;
        } catch (const weft::error&) {
        }
      });
      g.spawn([&, i] {
        std::optional<int> x;
        try {
          weft::with_timeout(std::chrono::microseconds(i % 70), [&] {
            return weft::select(weft::recv_case(a, x), weft::recv_case(b, x));
          });
          ++seen[static_cast<std::size_t>(*x)];
        } catch (const weft::error&) {
        }
      });
    }
    g.wait();
  });
  for (std::optional<int> x; (x = b.try_recv());)
    ++seen[static_cast<std::size_t>(*x)];
  int received = 0, twice = 0;
  for (int i = 0; i < kValues; ++i) {
    received += seen[static_cast<std::size_t>(i)];
    twice += seen[static_cast<std::size_t>(i)] > 1;
  }
  CHECK(twice == 0);
  CHECK(received == sent);
}
