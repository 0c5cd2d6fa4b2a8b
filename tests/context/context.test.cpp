// Tests of context_var, token, context, copy_context and bind_context (API.md "Context
// variables"), on plain threads.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <weft/context.hpp>
#include <weft/context_var.hpp>

#include "test_support.hpp"

using test::code_of;
using test::counted_value;
using weft::errc;

static_assert(!std::is_copy_constructible_v<weft::context_var<int>>);
static_assert(!std::is_move_constructible_v<weft::context_var<int>>);
static_assert(!std::is_copy_assignable_v<weft::context_var<int>>);
static_assert(!std::is_copy_constructible_v<weft::token<int>>);
static_assert(std::is_nothrow_move_constructible_v<weft::token<int>>);
static_assert(std::is_nothrow_move_assignable_v<weft::token<int>>);
static_assert(std::is_nothrow_copy_constructible_v<weft::context>);
static_assert(std::is_nothrow_move_constructible_v<weft::context>);
static_assert(std::is_nothrow_default_constructible_v<weft::context>);
static_assert(
    !std::is_copy_constructible_v<decltype(std::declval<weft::context_var<int>&>().scoped(1))>);

namespace {
weft::context_var<std::string> request_id("request_id");
weft::context_var<int> tenant("tenant", 7);
}  // namespace

TEST_CASE("an unbound variable without default refuses get() with lookup_failed naming it",
          "[context]") {
  weft::context_var<int> v("answer");
  CHECK(v.name() == "answer");
  CHECK(v.try_get() == nullptr);
  CHECK(v.get_or(3) == 3);
  CHECK(code_of([&] { (void)v.get(); }) == int(errc::lookup_failed));
  CHECK(test::message_of([&] { (void)v.get(); }) ==
        "weft: context_var 'answer' has no value and no default");
}

TEST_CASE("a default is returned until a value is bound, and again after reset", "[context]") {
  weft::context_var<int> v("v", 5);
  CHECK(v.get() == 5);
  CHECK(v.get_or(1) == 1);  // like Python's ContextVar.get(default): the argument wins
  auto t = v.set(6);
  CHECK(v.get() == 6);
  CHECK(v.get_or(1) == 6);
  CHECK(*v.try_get() == 6);
  CHECK(t.old_value() == nullptr);
  v.reset(t);
  CHECK(v.get() == 5);
  CHECK(weft::copy_context().find(v) == nullptr);  // defaults are not bindings
}

TEST_CASE("tokens record the old value and become used on reset", "[context]") {
  weft::context_var<int> v("v");
  auto t1 = v.set(1);
  auto t2 = v.set(2);
  CHECK(&t2.var() == &v);
  REQUIRE(t2.old_value() != nullptr);
  CHECK(*t2.old_value() == 1);
  CHECK_FALSE(t2.used());
  v.reset(t2);
  CHECK(t2.used());
  CHECK(*t2.old_value() == 1);  // still readable after use
  CHECK(v.get() == 1);
  CHECK(code_of([&] { v.reset(t2); }) == int(errc::token_used));
  v.reset(t1);
  CHECK(v.try_get() == nullptr);
}

TEST_CASE("resets need not be LIFO: each restores the value from before its own set", "[context]") {
  weft::context_var<int> v("v");
  weft::context ctx;
  ctx.run([&] {
    auto t1 = v.set(1);
    auto t2 = v.set(2);
    auto t3 = v.set(3);
    v.reset(t1);  // back to unbound, like Python
    CHECK(v.try_get() == nullptr);
    v.reset(t3);  // back to 2
    CHECK(v.get() == 2);
    v.reset(t2);
    CHECK(v.get() == 1);
  });
}

TEST_CASE("reset refuses a token of another variable, and a moved-from token", "[context]") {
  weft::context_var<int> a("a"), b("b");
  auto ta = a.set(1);
  CHECK(code_of([&] { b.reset(ta); }) == int(errc::token_wrong_var));
  CHECK(test::message_of([&] { b.reset(ta); }).find("'b'") != std::string::npos);
  auto moved = std::move(ta);
  CHECK(ta.used());
  CHECK(code_of([&] { a.reset(ta); }) == int(errc::token_used));
  a.reset(moved);
  CHECK(a.try_get() == nullptr);
}

TEST_CASE("reset refuses a token made in another context", "[context]") {
  weft::context_var<int> v("v");
  auto outer = v.set(1);
  weft::context ctx;
  ctx.run([&] {
    CHECK(code_of([&] { v.reset(outer); }) == int(errc::token_wrong_context));
    auto inner = v.set(2);
    weft::context other;
    other.run([&] { CHECK(code_of([&] { v.reset(inner); }) == int(errc::token_wrong_context)); });
    v.reset(inner);
  });
  std::thread([&] {
    CHECK(code_of([&] { v.reset(outer); }) == int(errc::token_wrong_context));
  }).join();
  CHECK_FALSE(outer.used());
  v.reset(outer);
}

TEST_CASE("context::run keeps changes in the object and hides them outside", "[context]") {
  weft::context_var<int> v("v");
  auto t = v.set(1);
  weft::context ctx = weft::copy_context();
  ctx.run([&] {
    CHECK(v.get() == 1);
    (void)v.set(2);
    CHECK(v.get() == 2);
  });
  CHECK(v.get() == 1);
  CHECK(*ctx.find(v) == 2);
  ctx.run([&] { CHECK(v.get() == 2); });  // a second run sees the first's changes
  CHECK(ctx.run([](int x, int y) { return x + y + 0; }, 2, 3) == 5);
  v.reset(t);
}

TEST_CASE("running a context that is already being run is refused", "[context]") {
  weft::context ctx;
  ctx.run([&] { CHECK(code_of([&] { ctx.run([] {}); }) == int(errc::context_already_entered)); });
  ctx.run([] {});  // not entered any more
  weft::context copy = ctx;
  ctx.run([&] { copy.run([] {}); });  // a copy is another context
}

TEST_CASE("an exception leaving run restores the outer context", "[context]") {
  weft::context_var<int> v("v", 0);
  weft::context ctx;
  CHECK_THROWS_AS(ctx.run([&] {
    (void)v.set(9);
    throw std::runtime_error("boom");
  }),
                  std::runtime_error);
  CHECK(v.get() == 0);
  CHECK(*ctx.find(v) == 9);
  ctx.run([] {});  // and the object is not left entered
}

TEST_CASE("a scoped binding resets at scope exit, also on exception", "[context]") {
  weft::context_var<int> v("v", 0);
  {
    auto g = v.scoped(1);
    CHECK(v.get() == 1);
    {
      auto g2 = v.scoped(2);
      CHECK(v.get() == 2);
    }
    CHECK(v.get() == 1);
  }
  CHECK(v.get() == 0);
  try {
    auto g = v.scoped(3);
    throw 1;
  } catch (int) {
  }
  CHECK(v.get() == 0);
}

TEST_CASE("copies of a context are independent snapshots", "[context]") {
  weft::context_var<int> v("v");
  weft::context_var<int> w("w");
  weft::context fresh;
  fresh.run([&] {
    auto t = v.set(1);
    weft::context a = weft::copy_context();
    auto t2 = v.set(2);
    weft::context b = weft::copy_context();
    CHECK(*a.find(v) == 1);
    CHECK(*b.find(v) == 2);
    CHECK(a.size() == 1);
    CHECK(a.contains(v));
    CHECK_FALSE(a.contains(w));
    a.run([&] { (void)w.set(5); });
    CHECK(a.size() == 2);
    CHECK(b.size() == 1);
    weft::context c = a;
    a.run([&] { (void)v.set(10); });
    CHECK(*c.find(v) == 1);
    CHECK(weft::context().size() == 0);
    v.reset(t2);
    v.reset(t);
  });
}

TEST_CASE("new threads start with an empty context", "[context]") {
  auto t = request_id.set("r1");
  auto t2 = tenant.set(1);
  std::thread([] {
    CHECK(request_id.try_get() == nullptr);
    CHECK(tenant.get() == 7);
    CHECK(weft::copy_context().size() == 0);
    auto t3 = request_id.set("thread");
    CHECK(request_id.get() == "thread");
  }).join();
  CHECK(request_id.get() == "r1");
  tenant.reset(t2);
  request_id.reset(t);
}

TEST_CASE("bind_context runs in the context current at bind time, on any thread", "[context]") {
  weft::context_var<int> v("v", 0);
  auto t = v.set(1);
  auto f = weft::bind_context([&](int add) {
    const int seen = v.get();
    (void)v.set(seen + 100);  // not kept between calls
    return seen + add;
  });
  auto t2 = v.set(2);  // later sets do not reach the bound callable
  CHECK(f(10) == 11);
  CHECK(f(10) == 11);
  int from_thread = 0;
  std::thread([&] { from_thread = f(20); }).join();
  CHECK(from_thread == 21);
  CHECK(v.get() == 2);
  v.reset(t2);
  v.reset(t);
}

TEST_CASE("values are destroyed exactly when the last snapshot holding them goes", "[context]") {
  REQUIRE(counted_value::alive == 0);
  {
    weft::context_var<counted_value> v("counted");
    weft::context ctx;
    ctx.run([&] {
      auto t1 = v.set(counted_value(1));
      CHECK(counted_value::alive == 1);
      weft::context snap = weft::copy_context();
      auto t2 = v.set(counted_value(2));
      CHECK(counted_value::alive == 2);  // snap and t2 hold the first value
      v.reset(t2);                       // the second is gone: nothing holds it
      CHECK(counted_value::alive == 1);
      v.reset(t1);
      CHECK(counted_value::alive == 1);  // snap still holds the first
    });
    CHECK(counted_value::alive == 0);
    ctx.run([&] { (void)v.set(counted_value(3)); });
    CHECK(counted_value::alive == 1);  // kept in ctx
  }
  CHECK(counted_value::alive == 0);
}

TEST_CASE("move-only values can be bound", "[context]") {
  weft::context_var<std::unique_ptr<int>> v("ptr");
  auto t = v.set(std::make_unique<int>(4));
  CHECK(*v.get() == 4);
  auto t2 = v.set(nullptr);
  CHECK(v.get() == nullptr);
  REQUIRE(t2.old_value() != nullptr);
  CHECK(**t2.old_value() == 4);
  v.reset(t2);
  CHECK(*v.get() == 4);
  v.reset(t);
}

TEST_CASE("a throwing value constructor leaves the context exactly as it was", "[context]") {
  struct fragile {
    int v;
    explicit fragile(int x) : v(x) {}
    fragile(const fragile& o) : v(o.v) {
      if (o.v < 0) throw std::runtime_error("copy refused");
    }
    fragile(fragile&& o) : fragile(static_cast<const fragile&>(o)) {}
  };
  weft::context_var<fragile> v("fragile");
  auto t = v.set(fragile(1));
  const weft::context before = weft::copy_context();
  CHECK_THROWS_AS(v.set(fragile(-1)), std::runtime_error);
  CHECK(v.get().v == 1);
  CHECK(weft::copy_context().size() == before.size());
  v.reset(t);
}

TEST_CASE("a thousand variables, and slots beyond one trie level", "[context]") {
  const int n = GENERATE(40, 1000, 1100);
  std::vector<std::unique_ptr<weft::context_var<int>>> vars;
  for (int i = 0; i < n; ++i) {
    vars.push_back(std::make_unique<weft::context_var<int>>("v" + std::to_string(i)));
  }
  weft::context ctx;
  ctx.run([&] {
    for (int i = 0; i < n; ++i)
      (void)vars[i]->set(i);
    const weft::context snap = weft::copy_context();
    for (int i = 0; i < n; i += 2)
      (void)vars[i]->set(-i);
    for (int i = 0; i < n; ++i) {
      REQUIRE(vars[i]->get() == (i % 2 == 0 ? -i : i));
      REQUIRE(*snap.find(*vars[i]) == i);
    }
    CHECK(snap.size() == std::size_t(n));
  });
  CHECK(ctx.size() == std::size_t(n));
}

TEST_CASE("a slow value destructor runs outside any lock", "[context]") {
  struct slow {
    std::atomic<bool>* release;
    std::atomic<bool>* started;
    ~slow() {
      if (release == nullptr) return;
      started->store(true);
      while (!release->load())
        std::this_thread::yield();
    }
  };
  std::atomic<bool> release{false}, started{false};
  weft::context_var<slow> v("slow");
  weft::context_var<int> other("other");
  std::thread dropper([&] {
    auto t = v.set(slow{&release, &started});
    auto t2 = v.set(slow{nullptr, nullptr});
    t = decltype(t)(std::move(t2));  // dropping the first token destroys the first value
  });
  while (!started)
    std::this_thread::yield();
  // The destructor is blocked now, on the other thread; context operations here go on.
  for (int i = 0; i < 1000; ++i) {
    auto tok = other.set(i);
    const weft::context c = weft::copy_context();
    CHECK(*c.find(other) == i);
    other.reset(tok);
  }
  release = true;
  dropper.join();
}

TEST_CASE("bind_context takes move-only callables; run passes references through", "[context]") {
  weft::context_var<int> v("v", 0);
  auto t = v.set(3);
  auto f =
      weft::bind_context([&v, p = std::make_unique<int>(4)](int x) { return *p + x + v.get(); });
  v.reset(t);
  CHECK(f(1) == 8);
  int target = 0;
  weft::context ctx;
  int& same = ctx.run([&]() -> int& { return target; });
  CHECK(&same == &target);
}

TEST_CASE("set takes lvalues and rvalues; emplace builds a large value in its cell", "[context]") {
  weft::context_var<std::string> s("s");
  const std::string lvalue = "kept";
  auto t1 = s.set(lvalue);
  CHECK(lvalue == "kept");
  CHECK(s.get() == "kept");
  auto t2 = s.emplace(3, 'x');
  CHECK(s.get() == "xxx");
  s.reset(t2);
  s.reset(t1);
  struct big {
    char bytes[1 << 20];
    explicit big(char c) { bytes[0] = c, bytes[sizeof bytes - 1] = c; }
  };
  weft::context_var<big> b("big");
  std::thread([&] {  // 1 MiB would not fit on a fiber stack: emplace never puts it there
    auto t = b.emplace('z');
    CHECK(b.get().bytes[(1 << 20) - 1] == 'z');
  })
      .join();
}

TEST_CASE("a bind_context callable is callable through a const reference", "[context]") {
  weft::context_var<int> v("v", 0);
  auto t = v.set(5);
  const auto f = weft::bind_context([&v] { return v.get(); });
  v.reset(t);
  CHECK(f() == 5);
  int calls = 0;
  auto counting = weft::bind_context([&v, calls]() mutable { return v.get() + ++calls; });
  CHECK(counting() == 1);  // a mutable callable still works through a non-const object
}

TEST_CASE(
    "a context being run on another thread can be copied: the copy is the snapshot the "
    "run began with, and never changes",
    "[context]") {
  weft::context_var<int> v("v", -1);
  weft::context ctx;
  ctx.run([&] { (void)v.set(0); });
  std::atomic<bool> running{false}, finished_sets{false}, release{false};
  std::thread runner([&] {
    ctx.run([&] {
      running = true;
      for (int i = 1; i <= 200000; ++i)
        (void)v.set(i);  // in place after the first: the snapshot is not shared
      finished_sets = true;
      while (!release)
        std::this_thread::yield();
    });
  });
  while (!running)
    std::this_thread::yield();
  int copies = 0;
  bool consistent = true;
  do {
    weft::context c = ctx;
    const int* p = c.find(v);
    consistent = consistent && p != nullptr && *p == 0 && c.size() == 1;
    ++copies;
  } while (!finished_sets);
  weft::context moved = std::move(ctx);  // moving a context being run copies it
  CHECK(*moved.find(v) == 0);
  release = true;
  runner.join();
  CHECK(consistent);
  CHECK(copies > 0);
  CHECK(*ctx.find(v) == 200000);  // the run's changes, visible once it returned
  weft::context after = ctx;
  CHECK(*after.find(v) == 200000);
}

TEST_CASE("a context cannot be assigned while it is being run; the runner may copy it",
          "[context]") {
  weft::context_var<int> v("v", 0);
  weft::context ctx, other;
  ctx.run([&] {
    (void)v.set(1);
    CHECK(code_of([&] { ctx = other; }) == int(errc::context_already_entered));
    CHECK(code_of([&] { ctx = weft::context(); }) == int(errc::context_already_entered));
    const weft::context mine = ctx;  // the runner sees its own changes
    CHECK(*mine.find(v) == 1);
    CHECK(*ctx.find(v) == 1);
    weft::context moved = std::move(ctx);  // a copy: the run goes on with its context
    CHECK(v.get() == 1);
    CHECK(*moved.find(v) == 1);
  });
  other = ctx;
  CHECK(*other.find(v) == 1);
  other = weft::context();
  CHECK(other.size() == 0);
}

TEST_CASE("a token made before an assignment is refused after it", "[context]") {
  weft::context_var<int> v("v");
  weft::context ctx;
  std::optional<weft::token<int>> tok;
  ctx.run([&] { tok.emplace(v.set(1)); });
  ctx = weft::context();
  ctx.run([&] { CHECK(code_of([&] { v.reset(*tok); }) == int(errc::token_wrong_context)); });
}

TEST_CASE("a scoped guard whose reset fails reports it instead of swallowing it", "[context]") {
  weft::context_var<int> v("v");
  weft::context ctx;
  std::unique_ptr<weft::detail::scoped_binding<int>> guard;
  ctx.run([&] { guard.reset(new auto(v.scoped(1))); });
  // The reset now happens outside the context the guard was made in; on a plain thread the
  // report goes to stderr (a pool fiber's goes to on_unhandled_exception: executor tests).
  guard.reset();
  CHECK(*ctx.find(v) == 1);
}

// Small trivially copyable values live in the trie's nodes, others in cells of their own
// (include/weft/detail/snapshot.hpp). The storage must not show: these check the edges of
// the in-place kind -- an all-zero value, tokens, copies, the second trie level.
namespace {
struct two_ints {
  int a, b;
};
struct not_trivial {
  int v;
  explicit not_trivial(int x) : v(x) {}
  not_trivial(const not_trivial& o) : v(o.v) {}
};
enum class level : std::uint8_t { low, high };
}  // namespace

static_assert(weft::detail::stored_in_place<int>);
static_assert(weft::detail::stored_in_place<double>);
static_assert(weft::detail::stored_in_place<const char*>);
static_assert(weft::detail::stored_in_place<level>);
static_assert(weft::detail::stored_in_place<two_ints>);
static_assert(weft::detail::stored_in_place<std::chrono::steady_clock::time_point>);
static_assert(!weft::detail::stored_in_place<std::string>);
static_assert(!weft::detail::stored_in_place<not_trivial>);
static_assert(!weft::detail::stored_in_place<std::pair<std::uint64_t, std::uint64_t>>);

TEST_CASE("values stored in place: zero is a value, tokens and copies behave as with cells",
          "[context]") {
  weft::context_var<int> count("count");
  weft::context_var<two_ints> pair("pair");
  weft::context_var<level> lvl("level", level::high);
  weft::context ctx;
  ctx.run([&] {
    REQUIRE(count.try_get() == nullptr);
    auto t0 = count.set(0);  // all-zero bytes: still bound
    REQUIRE(count.try_get() != nullptr);
    CHECK(count.get() == 0);
    CHECK(t0.old_value() == nullptr);
    CHECK(weft::copy_context().size() == 1);
    CHECK(weft::copy_context().contains(count));

    auto t1 = count.set(5);
    REQUIRE(t1.old_value() != nullptr);
    CHECK(*t1.old_value() == 0);
    weft::token<int> moved = std::move(t1);  // the old value moves with the token
    REQUIRE(moved.old_value() != nullptr);
    CHECK(*moved.old_value() == 0);

    auto tp = pair.set({3, -4});
    CHECK(lvl.get() == level::high);  // the default until bound
    auto tl = lvl.set(level::low);
    CHECK(lvl.get() == level::low);

    const weft::context snapshot = weft::copy_context();
    auto t2 = count.set(9);  // the node is shared now: copied, the snapshot keeps 5
    CHECK(*snapshot.find(count) == 5);
    CHECK(snapshot.find(pair)->b == -4);
    CHECK(count.get() == 9);

    count.reset(t2);
    count.reset(moved);
    CHECK(count.get() == 0);
    count.reset(t0);
    CHECK(count.try_get() == nullptr);
    CHECK(weft::copy_context().size() == 2);
    lvl.reset(tl);
    CHECK(lvl.get() == level::high);
    CHECK(!weft::copy_context().contains(lvl));
    pair.reset(tp);
    CHECK(weft::copy_context().size() == 0);
    CHECK(*snapshot.find(count) == 5);
  });
}

TEST_CASE("in-place values and cells mix in one node and beyond the first trie level",
          "[context]") {
  std::vector<std::unique_ptr<weft::context_var<long>>> numbers;
  std::vector<std::unique_ptr<weft::context_var<counted_value>>> counted;
  for (int i = 0; i < 40; ++i) {  // 80 slots: the trie has two levels
    numbers.push_back(std::make_unique<weft::context_var<long>>("n" + std::to_string(i)));
    counted.push_back(std::make_unique<weft::context_var<counted_value>>("c" + std::to_string(i)));
  }
  const int alive_before = counted_value::alive;
  {
    weft::context ctx;
    weft::context copy;
    ctx.run([&] {
      for (int i = 0; i < 40; ++i) {
        (void)numbers[std::size_t(i)]->set(i * 10L);
        (void)counted[std::size_t(i)]->set(counted_value(i));
      }
      copy = weft::copy_context();
      for (int i = 0; i < 40; i += 3) {
        (void)numbers[std::size_t(i)]->set(-1);
        (void)counted[std::size_t(i)]->set(counted_value(-1));
      }
      for (int i = 0; i < 40; ++i) {
        CHECK(numbers[std::size_t(i)]->get() == (i % 3 == 0 ? -1 : i * 10L));
        CHECK(counted[std::size_t(i)]->get().value == (i % 3 == 0 ? -1 : i));
      }
    });
    for (int i = 0; i < 40; ++i) {
      CHECK(*copy.find(*numbers[std::size_t(i)]) == i * 10L);
      CHECK(copy.find(*counted[std::size_t(i)])->value == i);
    }
    CHECK(copy.size() == 80);
    CHECK(ctx.size() == 80);
  }
  CHECK(counted_value::alive == alive_before);
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

TEST_CASE("past max_context_vars a new context_var is refused, named, never aliased", "[context]") {
  const int outcome = exit_status_of_child([] {
    std::vector<std::unique_ptr<weft::context_var<int>>> vars;
    std::string message;
    try {
      for (std::uint32_t i = 0; i <= weft::max_context_vars; ++i)
        vars.push_back(std::make_unique<weft::context_var<int>>("many"));
      return 1;  // never refused
    } catch (const weft::error& e) {
      if (e.code() != errc::invalid_argument) return 2;
      message = e.what();
    }
    if (message.find("'many'") == std::string::npos) return 3;
    if (code_of([] { weft::context_var<int> again("again"); }) != int(errc::invalid_argument)) {
      return 4;  // refused for good, not only once
    }
    // The variables made are all distinct.
    weft::context ctx;
    bool distinct = true;
    ctx.run([&] {
      (void)vars.front()->set(1);
      (void)vars.back()->set(2);
      distinct = vars.front()->get() == 1 && vars.back()->get() == 2;
    });
    return distinct ? 0 : 5;
  });
  CHECK(outcome == 0);
}
