// Tests of fiber_local (API.md "Fiber-local storage").
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

#include "test_support.hpp"

static_assert(!std::is_copy_constructible_v<weft::fiber_local<int>>);
static_assert(!std::is_move_constructible_v<weft::fiber_local<int>>);

namespace {
weft::fiber_local<int> counter;
weft::fiber_local<std::string> named([] { return std::string("fresh"); });
weft::fiber_local<test::counted_value> tracked;
}  // namespace

TEST_CASE("each plain thread has its own value, starting as T{}", "[fiber_local]") {
  *counter = 5;
  CHECK(counter.get() == 5);
  std::thread([] {
    CHECK(counter.get() == 0);
    CHECK(*named == "fresh");
    named->append("!");
    CHECK(named.get() == "fresh!");
  }).join();
  CHECK(counter.get() == 5);
  CHECK(named.get() == "fresh");
}

TEST_CASE("each fiber has its own value, never inherited from its parent", "[fiber_local]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
  ex.run([] {
    counter.get() = 41;
    named.get() = "parent";
    auto child = weft::spawn([] {
      const bool fresh = counter.get() == 0 && named.get() == "fresh";
      counter.get() = 7;
      return fresh;
    });
    CHECK(child.get());
    CHECK(counter.get() == 41);  // the child's write stayed in the child
    CHECK(named.get() == "parent");
  });
}

TEST_CASE("values are destroyed when their fiber ends", "[fiber_local]") {
  weft::executor ex(2);
  REQUIRE(test::counted_value::alive == 0);
  // Counted here, checked on the test's thread: Catch is not thread-safe, and the fibers run
  // on two workers at once.
  std::atomic<int> wrong{0};
  std::vector<weft::task<void>> tasks;
  for (int i = 0; i < 100; ++i) {
    tasks.push_back(ex.spawn([i, &wrong] {
      tracked->value = i;
      weft::this_fiber::yield();
      if (tracked->value != i) ++wrong;
    }));
  }
  for (auto& t : tasks)
    t.get();
  CHECK(wrong == 0);
  CHECK(test::counted_value::alive == 0);  // gone before get() returned
  ex.run([] { (void)tracked.get(); });
  CHECK(test::counted_value::alive == 0);
}

TEST_CASE("a local created on first use survives many switches", "[fiber_local]") {
  weft::executor ex(4);
  std::atomic<int> wrong{0};
  std::vector<weft::task<void>> tasks;
  for (int i = 0; i < 300; ++i) {
    tasks.push_back(ex.spawn([&wrong, i] {
      for (int k = 0; k < 30; ++k) {
        counter.get() += i;
        weft::this_fiber::yield();
      }
      if (counter.get() != 30 * i) ++wrong;
    }));
  }
  for (auto& t : tasks)
    t.get();
  CHECK(wrong == 0);
}

TEST_CASE("many fiber_locals in one fiber", "[fiber_local]") {
  std::vector<std::unique_ptr<weft::fiber_local<int>>> locals;
  for (int i = 0; i < 100; ++i) {
    locals.push_back(std::make_unique<weft::fiber_local<int>>([i] { return i; }));
  }
  weft::executor ex(1);
  CHECK(ex.run([&] {
    int sum = 0;
    for (auto& l : locals)
      sum += l->get();
    return sum;
  }) == 99 * 100 / 2);
}

namespace {

// exit_status_of_child() runs f in a forked child process (this one has no other threads
// here) and returns the child's exit code: what f returns, or -1 if it died otherwise. For a
// test that must use up something of the whole process.
template <class F>
int exit_status_of_child(F f) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(f());
  int status = 0;
  if (child < 0 || ::waitpid(child, &status, 0) != child) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("past max_fiber_locals a new fiber_local is refused, never aliased", "[fiber_local]") {
  const int outcome = exit_status_of_child([] {
    std::vector<std::unique_ptr<weft::fiber_local<int>>> locals;
    try {
      for (std::uint32_t i = 0; i <= weft::max_fiber_locals; ++i)
        locals.push_back(std::make_unique<weft::fiber_local<int>>());
      return 1;  // never refused
    } catch (const weft::error& e) {
      if (e.code() != weft::errc::invalid_argument) return 2;
      if (std::string(e.what()).find("fiber_local") == std::string::npos) return 3;
    }
    if (test::code_of([] { weft::fiber_local<int> again; }) != int(weft::errc::invalid_argument)) {
      return 4;  // refused for good, not only once
    }
    // The locals made are all distinct.
    locals.front()->get() = 1;
    locals.back()->get() = 2;
    return locals.front()->get() == 1 && locals.back()->get() == 2 ? 0 : 5;
  });
  CHECK(outcome == 0);
}
