// Tests of executor::fibers() and executor::dump() (API.md "Introspection").
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using test::code_of;
using test::eventually;
using test::gate;

namespace {

struct opaque {
  int x = 0;
};
struct loud {
  int x = 0;
};
std::ostream& operator<<(std::ostream& out, const loud& l) {
  if (l.x < 0) throw std::runtime_error("cannot print");
  return out << "loud(" << l.x << ')';
}

weft::context_var<std::string> request("intro.request");
weft::context_var<int> tenant("intro.tenant");
weft::context_var<opaque> secret("intro.secret");
weft::context_var<loud> noisy("intro.noisy");

// value() is the printed value of the variable called name in f's context, if bound.
std::optional<std::string> value(const weft::fiber_info& f, const std::string& name) {
  for (const auto& [n, v] : f.context) {
    if (n == name) return v;
  }
  return std::nullopt;
}

std::vector<std::string> names(const weft::fiber_info& f) {
  std::vector<std::string> result;
  for (const auto& entry : f.context)
    result.push_back(entry.first);
  return result;
}

// The one fiber whose context binds request to `id`, or nullptr.
const weft::fiber_info* with_request(const std::vector<weft::fiber_info>& all,
                                     const std::string& id) {
  const weft::fiber_info* found = nullptr;
  for (const auto& f : all) {
    if (value(f, "intro.request") == id) {
      if (found != nullptr) return nullptr;
      found = &f;
    }
  }
  return found;
}

}  // namespace

TEST_CASE("fibers() lists waiting fibers as suspended, with parent, age and context",
          "[introspection]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
  gate release;
  auto parent = ex.spawn([&] {
    auto r = request.scoped("r-1");
    auto t = tenant.scoped(7);
    auto s = secret.scoped(opaque{});
    auto n = noisy.scoped(loud{-1});
    auto child = weft::spawn([&] {
      auto inner = tenant.scoped(8);
      auto words = request.scoped("two words");
      weft::offload([&] { release.wait(); });  // suspended until the test opens the gate
    });
    child.get();
  });
  std::vector<weft::fiber_info> all;
  const weft::fiber_info* p = nullptr;
  const weft::fiber_info* c = nullptr;
  REQUIRE(eventually([&] {
    all = ex.fibers();
    p = with_request(all, "r-1");
    c = with_request(all, "two words");
    return all.size() == 2 && p != nullptr && c != nullptr &&
           p->state == weft::fiber_state::suspended && c->state == weft::fiber_state::suspended;
  }));
  CHECK(p->id > 0);
  CHECK(p->parent == 0);  // submitted from a plain thread
  CHECK(c->parent == p->id);
  CHECK(c->id != p->id);
  CHECK(p->context_known);
  CHECK(c->context_known);
  CHECK(p->age >= 0s);
  CHECK(p->age < 10min);
  // In the order the variables were defined; values with operator<< printed, others not.
  CHECK(names(*p) ==
        std::vector<std::string>{"intro.request", "intro.tenant", "intro.secret", "intro.noisy"});
  CHECK(value(*p, "intro.tenant") == "7");
  CHECK(value(*p, "intro.secret") == "<unprintable>");
  CHECK(value(*p, "intro.noisy") == "<operator<< threw>");
  CHECK(value(*c, "intro.tenant") == "8");
  CHECK(value(*c, "intro.secret") == "<unprintable>");

  std::ostringstream out;
  ex.dump(out);
  const std::string text = out.str();
  INFO(text);
  CHECK(text.find("2 fibers (0 running, 0 ready, 2 suspended)") != std::string::npos);
  const std::string parent_line = "\nfiber " + std::to_string(p->id) + " suspended ";
  const std::string child_line = "\n  fiber " + std::to_string(c->id) + " suspended ";
  REQUIRE(text.find(parent_line) != std::string::npos);
  CHECK(text.find(child_line) > text.find(parent_line));  // the child under its parent
  CHECK(text.find("intro.request=r-1 intro.tenant=7") != std::string::npos);
  CHECK(text.find("intro.request=\"two words\"") != std::string::npos);

  release.open();
  parent.get();
  ex.join();
  CHECK(ex.fibers().empty());
}

TEST_CASE("fibers() shows spawned fibers that have not run yet as ready", "[introspection]") {
  weft::executor ex(1);  // while the caller runs, its children cannot
  ex.run([&] {
    auto r = request.scoped("caller");
    std::vector<weft::task<void>> children;
    for (int i = 0; i < 10; ++i) {
      auto t = tenant.scoped(i);
      children.push_back(weft::spawn([] {}));
    }
    const auto all = ex.fibers();
    REQUIRE(all.size() == 11);
    const weft::fiber_info* self = nullptr;
    int ready = 0;
    for (const auto& f : all) {
      if (f.state == weft::fiber_state::running) {
        self = &f;
      } else {
        CHECK(f.state == weft::fiber_state::ready);
        CHECK(value(f, "intro.request") == "caller");
        CHECK(value(f, "intro.tenant").has_value());
        ++ready;
      }
    }
    REQUIRE(self != nullptr);  // the caller itself, with its own context
    CHECK(self->context_known);
    CHECK(value(*self, "intro.request") == "caller");
    CHECK(!value(*self, "intro.tenant").has_value());
    CHECK(ready == 10);
    for (const auto& f : all) {
      if (&f != self) CHECK(f.parent == self->id);
    }
    for (auto& t : children)
      t.get();
  });
}

TEST_CASE("a fiber that keeps running on another worker is listed without its context",
          "[introspection]") {
  weft::executor ex(2);
  std::atomic<bool> spinning{false};
  std::atomic<bool> stop{false};
  auto spinner = ex.spawn([&] {
    auto r = request.scoped("spinner");
    spinning = true;
    while (!stop.load()) {
      // computes without a pause: never off its worker
    }
  });
  REQUIRE(eventually([&] { return spinning.load(); }));
  const auto all = ex.fibers();
  REQUIRE(all.size() == 1);
  CHECK(all[0].state == weft::fiber_state::running);
  CHECK(!all[0].context_known);
  CHECK(all[0].context.empty());
  std::ostringstream out;
  ex.dump(out);
  CHECK(out.str().find("<context not read: running>") != std::string::npos);
  stop = true;
  spinner.get();
}

TEST_CASE("ids are unique and never reused; a fiber spawned from outside has no parent",
          "[introspection]") {
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
  gate release;
  std::vector<weft::task<void>> waiting;
  for (int i = 0; i < 100; ++i) {
    waiting.push_back(ex.spawn([&] { weft::offload([&] { release.wait(); }); }));
  }
  std::vector<weft::fiber_info> first;
  REQUIRE(eventually([&] {
    first = ex.fibers();
    return first.size() == 100;
  }));
  for (std::size_t i = 0; i < first.size(); ++i) {
    CHECK(first[i].id > 0);
    CHECK(first[i].parent == 0);
    if (i > 0) CHECK(first[i].id > first[i - 1].id);  // sorted, distinct
  }
  release.open();
  for (auto& t : waiting)
    t.get();
  // The same stacks are reused by new fibers: new ids.
  const auto later = ex.run([&ex] { return ex.fibers(); });
  REQUIRE(later.size() == 1);
  for (const auto& f : first)
    CHECK(f.id != later[0].id);
}

TEST_CASE("listings while thousands of fibers spawn, migrate and end", "[introspection]") {
  const unsigned threads = GENERATE(2u, 4u);
  weft::executor ex(threads);
  std::atomic<bool> done{false};
  std::atomic<int> listings{0};
  // A listing from a plain thread and one from a fiber, over and over, while trees of
  // fibers bind values, yield (migrate) and end.
  // Catch's assertions are not thread-safe: the listers count what is wrong, the test
  // thread checks the count.
  std::atomic<long> bad_id{0}, bad_value{0};
  auto check = [&](const std::vector<weft::fiber_info>& all) {
    for (const auto& f : all) {
      if (f.id == 0) ++bad_id;
      if (auto t = value(f, "intro.tenant")) {
        // Every fiber of the trees binds its depth: a number from 0 to 4.
        if (t->size() != 1 || (*t)[0] < '0' || (*t)[0] > '4') ++bad_value;
      }
    }
  };
  std::thread outside([&] {
    while (!done) {
      check(ex.fibers());
      std::ostringstream sink;
      ex.dump(sink);
      ++listings;
    }
  });
  auto inside = ex.spawn([&] {
    while (!done) {
      check(ex.fibers());
      ++listings;
      weft::this_fiber::yield();
    }
  });
  struct tree {
    static void grow(int depth) {
      auto t = tenant.scoped(depth);
      auto r = request.scoped("tree level " + std::to_string(depth));
      weft::this_fiber::yield();
      if (depth == 4) return;
      weft::task_group g;
      for (int i = 0; i < 4; ++i)
        g.spawn([depth] { grow(depth + 1); });
      weft::this_fiber::yield();
      g.wait();
    }
  };
  for (int round = 0; round < 10; ++round)
    ex.run([] { tree::grow(0); });  // 341 fibers a round
  REQUIRE(eventually([&] { return listings.load() >= 4; }));
  done = true;
  outside.join();
  inside.get();
  ex.join();
  CHECK(bad_id == 0);
  CHECK(bad_value == 0);
  CHECK(ex.fibers().empty());
  CHECK(ex.stats().spawned == 10 * 341 + 1);  // run() spawns each root
}

TEST_CASE("dump_on_signal writes a dump when the signal arrives, from its own thread",
          "[introspection][signal]") {
  weft::executor ex(2);
  int ends[2];
  REQUIRE(::pipe2(ends, O_CLOEXEC | O_NONBLOCK) == 0);
  gate release;
  auto waiting = ex.spawn([&] {
    auto r = request.scoped("signalled");
    weft::offload([&] { release.wait(); });
  });
  REQUIRE(eventually([&] {
    const auto all = ex.fibers();
    return all.size() == 1 && all[0].state == weft::fiber_state::suspended;
  }));
  {
    weft::dump_on_signal dumper(ex, SIGUSR2, ends[1]);
    CHECK(code_of([&] { weft::dump_on_signal twice(ex, SIGUSR2); }) ==
          int(weft::errc::invalid_argument));
    CHECK(code_of([&] { weft::dump_on_signal uncatchable(ex, SIGKILL); }) ==
          int(weft::errc::invalid_argument));
    CHECK(code_of([&] { weft::dump_on_signal no_such(ex, 0); }) ==
          int(weft::errc::invalid_argument));
    CHECK(dumper.dumps() == 0);
    std::raise(SIGUSR2);
    REQUIRE(eventually([&] { return dumper.dumps() == 1; }));
    std::raise(SIGUSR2);
    REQUIRE(eventually([&] { return dumper.dumps() == 2; }));
  }
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = ::read(ends[0], buffer, sizeof buffer)) > 0;)
    text.append(buffer, static_cast<std::size_t>(n));
  INFO(text);
  CHECK(text.find("weft executor '" + ex.name() + "': 2 threads, 1 fibers") == 0);
  CHECK(text.find("suspended") != std::string::npos);
  CHECK(text.find("intro.request=signalled") != std::string::npos);
  // Two dumps, one after the other.
  CHECK(text.find("weft executor", 1) != std::string::npos);
  // Once the dumper is gone, the signal is free for another.
  { weft::dump_on_signal again(ex, SIGUSR2, ends[1]); }
  ::close(ends[0]);
  ::close(ends[1]);
  release.open();
  waiting.get();
}

TEST_CASE("fibers() shows each fiber's deadline and whether it was cancelled", "[introspection]") {
  const unsigned threads = GENERATE(1u, 2u);
  weft::executor ex(threads);
  gate release;
  std::atomic<weft::task_group*> group{nullptr};
  std::atomic<bool> running{false};
  const auto deadline = std::chrono::steady_clock::now() + 1h;
  auto waiting = ex.spawn([&] {
    weft::with_deadline(deadline, [&] {
      weft::task_group g;
      g.spawn([&] {
        auto r = request.scoped("in group");
        weft::offload([&] {
          running = true;  // from here on the call is not withdrawn by a cancellation
          release.wait();
        });
      });
      group = &g;
      try {
        g.wait();
      } catch (const weft::error&) {
      }
    });
  });
  auto plain = ex.spawn([&] {
    auto r = request.scoped("no deadline");
    weft::offload([&] { release.wait(); });
  });
  auto state_of = [&](const std::string& id) {
    const auto all = ex.fibers();
    const weft::fiber_info* f = with_request(all, id);
    return f ? std::optional<weft::fiber_info>(*f) : std::nullopt;
  };
  std::optional<weft::fiber_info> child;
  std::optional<weft::fiber_info> other;
  // Both fibers must have bound their request id: with one worker (or a busy machine) the
  // second may not have started when the first is already parked.
  REQUIRE(eventually([&] {
    child = state_of("in group");
    other = state_of("no deadline");
    return child && child->state == weft::fiber_state::suspended && group.load() != nullptr &&
           running.load() && other;
  }));
  CHECK(child->deadline == deadline);
  CHECK(!child->cancelled);
  CHECK(other->deadline == std::chrono::steady_clock::time_point::max());
  CHECK(!other->cancelled);
  group.load()->cancel();
  child = state_of("in group");
  REQUIRE(child);
  CHECK(child->cancelled);  // still waiting for offload(), which is never interrupted
  std::ostringstream out;
  ex.dump(out);
  INFO(out.str());
  CHECK(out.str().find(" deadline in 59m") != std::string::npos);
  CHECK(out.str().find(" cancelled intro.request=\"in group\"") != std::string::npos);
  release.open();
  waiting.get();
  plain.get();
}

TEST_CASE("a listing shows every variable of a context two trie levels deep, in place or not",
          "[introspection]") {
  // 40 more variables of each kind: their slots pass 32, so the trie has an inner level.
  std::vector<std::unique_ptr<weft::context_var<long>>> numbers;
  std::vector<std::unique_ptr<weft::context_var<std::string>>> texts;
  for (int i = 0; i < 40; ++i) {
    numbers.push_back(std::make_unique<weft::context_var<long>>("deep.n" + std::to_string(i)));
    texts.push_back(std::make_unique<weft::context_var<std::string>>("deep.t" + std::to_string(i)));
  }
  weft::executor ex(1);
  ex.run([&] {
    std::atomic<bool> bound{false};
    weft::task_group g;
    g.spawn([&] {
      for (int i = 0; i < 40; ++i) {
        (void)numbers[std::size_t(i)]->set(i * 3L);
        (void)texts[std::size_t(i)]->set("t" + std::to_string(i));
      }
      bound = true;
      weft::this_fiber::sleep_for(1h);  // until the group is cancelled
    });
    while (!bound)
      weft::this_fiber::yield();
    std::optional<weft::fiber_info> child;
    for (const weft::fiber_info& f : ex.fibers()) {
      if (f.parent != 0) child = f;
    }
    g.cancel();
    REQUIRE(child.has_value());
    REQUIRE(child->context.size() == 80);
    for (int i = 0; i < 40; ++i) {
      CHECK(value(*child, "deep.n" + std::to_string(i)) == std::to_string(i * 3));
      CHECK(value(*child, "deep.t" + std::to_string(i)) == "t" + std::to_string(i));
    }
  });
}

TEST_CASE("dump_on_signal refuses the signals of a synchronous fault, naming the signal",
          "[introspection][signal]") {
  weft::executor ex(1);
  for (const int signo : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT}) {
    INFO("signal " << signo);
    struct sigaction before {};
    REQUIRE(::sigaction(signo, nullptr, &before) == 0);
    CHECK(code_of([&] { weft::dump_on_signal fault(ex, signo, 2); }) ==
          int(weft::errc::invalid_argument));
    const std::string message = test::message_of([&] { weft::dump_on_signal fault(ex, signo, 2); });
    CHECK(message.find(::sigabbrev_np(signo)) != std::string::npos);
    // Nothing was installed.
    struct sigaction after {};
    REQUIRE(::sigaction(signo, nullptr, &after) == 0);
    CHECK(after.sa_handler == before.sa_handler);
  }
}

TEST_CASE("waiting_on names what each suspended fiber waits for", "[introspection]") {
  weft::executor ex(2);
  weft::channel<int> jobs(0, "jobs"), results(0, "results");
  weft::channel<int> stop;
  weft::mutex m("accounts");
  weft::condition_variable cv("ready");
  weft::semaphore slots(0, "slots");
  test::gate release_offload;
  m.lock();  // held by this thread: a fiber below waits for it
  // One group holds every waiting fiber, so that cancelling it ends them all.
  auto controller = ex.spawn([&] {
    weft::task_group g;
    g.spawn([&] { jobs.recv(); });
    g.spawn([&] { results.send(1); });
    g.spawn([&] {
      weft::task_group inner;
      inner.spawn([] { weft::this_fiber::sleep_for(1h); });
      inner.wait();
    });
    g.spawn([&] {
      std::optional<int> x;
      weft::channel<int> other;
      weft::select(weft::recv_case(other, x));
    });
    g.spawn([&] {
      m.lock();
      m.unlock();
    });
    g.spawn([&] {
      weft::mutex own;
      std::unique_lock<weft::mutex> lk(own);
      cv.wait(lk, [] { return false; });
    });
    g.spawn([&] { slots.acquire(); });
    g.spawn([&] { weft::this_fiber::sleep_for(1h); });
    g.spawn([&] { weft::offload([&] { release_offload.wait(); }); });
    g.spawn([&] { weft::spawn([] { weft::this_fiber::sleep_for(1h); }).get(); });
    stop.recv();
    g.cancel();
    try {
      g.wait();
    } catch (...) {
    }
  });
  const std::vector<std::string> expected = {"channel jobs: recv",
                                             "channel results: send",
                                             "select (1 case)",
                                             "mutex accounts: lock",
                                             "condition_variable ready: wait",
                                             "semaphore slots: acquire",
                                             "sleep",
                                             "offload",
                                             "task: get",
                                             "task_group: wait",
                                             "channel: recv"};
  std::vector<std::string> seen;
  bool stray = false;  // a fiber that is not suspended but says it waits
  const bool all = test::eventually(
      [&] {
        seen.clear();
        for (const weft::fiber_info& f : ex.fibers()) {
          if (f.state == weft::fiber_state::suspended) {
            seen.push_back(f.waiting_on);
          } else if (!f.waiting_on.empty()) {
            stray = true;
          }
        }
        return std::all_of(expected.begin(), expected.end(), [&](const std::string& e) {
          return std::find(seen.begin(), seen.end(), e) != seen.end();
        });
      },
      std::chrono::seconds(20));
  CAPTURE(seen);
  REQUIRE(all);
  CHECK_FALSE(stray);
  std::ostringstream dump;
  ex.dump(dump);
  CHECK(dump.str().find("suspended (mutex accounts: lock)") != std::string::npos);
  // Let everything go: the lock and the offloaded call are not cancellation points.
  m.unlock();
  release_offload.open();
  stop.send(0);
  controller.get();
}

namespace {
// napping prints itself only after a 1 ms sleep: an operator<< that suspends the fiber that
// prints it (a printer that logs, locks a weft::mutex, ...).
struct napping {
  int x = 0;
};
std::ostream& operator<<(std::ostream& out, const napping& n) {
  weft::this_fiber::sleep_for(1ms);
  return out << "napping(" << n.x << ')';
}
weft::context_var<napping> napper("intro.napper");

// relisting's operator<< lists the fibers of *listed (or says what that refused with).
struct relisting {
  weft::executor* listed = nullptr;
};
std::ostream& operator<<(std::ostream& out, const relisting& r) {
  try {
    std::ostringstream inner;
    r.listed->dump(inner);
    return out << "listed";
  } catch (const weft::error& e) {
    return out << "refused:" << (e.code() == weft::errc::would_deadlock ? "would_deadlock" : "?");
  }
}
weft::context_var<relisting> relister("intro.relister");

// finishes_within() runs f on a detached thread and says whether it returned in time. A hang
// is reported, then the process ends: the hung executor could not be joined.
template <class F>
void finishes_within(std::chrono::seconds limit, const char* what, F f) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread([done, f = std::move(f)]() mutable {
    f();
    done->store(true);
  }).detach();
  if (!eventually([&] { return done->load(); }, limit)) {
    FAIL_CHECK(what);
    std::fflush(nullptr);
    std::_Exit(1);
  }
}
}  // namespace

TEST_CASE("dump() from fibers on one worker whose context values suspend while printing ends",
          "[introspection]") {
  // Two fibers on a single worker, each listing while its own value's operator<< suspends it:
  // the other one's listing must not block the worker (a listing printed its values under a
  // std::mutex, and the second fiber blocked the only thread on it: 3 of 3 hung).
  std::string last;
  finishes_within(60s, "two fibers dumping with values that suspend hung the worker", [&] {
    weft::executor ex{1};
    auto dumper = [&ex](int id) {
      auto v = napper.scoped(napping{id});
      std::string out;
      for (int round = 0; round < 5; ++round) {
        std::ostringstream s;
        ex.dump(s);
        out = s.str();
      }
      return out;
    };
    auto a = ex.spawn(dumper, 1);
    auto b = ex.spawn(dumper, 2);
    a.get();
    last = b.get();
  });
  CHECK(last.find("intro.napper=napping(1)") != std::string::npos);
  CHECK(last.find("intro.napper=napping(2)") != std::string::npos);
}

TEST_CASE("fibers() called from a context value's operator<< is refused, not a deadlock",
          "[introspection]") {
  // A printer that lists fibers again would list itself again, without end: the nested call
  // throws errc::would_deadlock (documented in docs/introspection.md). From a fiber and from a
  // plain thread; the outer listing completes.
  std::string from_fiber;
  std::string from_thread;
  finishes_within(60s, "a dump() from inside operator<< hung", [&] {
    weft::executor ex{1};
    from_fiber = ex.run([&ex] {
      auto v = relister.scoped(relisting{&ex});
      std::ostringstream s;
      ex.dump(s);
      return s.str();
    });
    weft::channel<int> stop(0, "stop");
    auto holder = ex.spawn([&] {
      auto v = relister.scoped(relisting{&ex});
      stop.recv();
    });
    REQUIRE(eventually([&] { return test::parked_on(ex, "channel stop: recv"); }));
    std::ostringstream s;
    ex.dump(s);
    from_thread = s.str();
    stop.send(0);
    holder.get();
  });
  CHECK(from_fiber.find("intro.relister=refused:would_deadlock") != std::string::npos);
  CHECK(from_thread.find("intro.relister=refused:would_deadlock") != std::string::npos);
}
