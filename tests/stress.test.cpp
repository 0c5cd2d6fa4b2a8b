// Stress tests, hidden from the default run by the [.stress] tag; CI runs them explicitly
// (meson test --suite stress).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;

namespace {

constexpr int kLevels = 6;  // 10^6 leaves, 1.11M fibers
std::vector<std::unique_ptr<weft::context_var<std::uint64_t>>> make_level_vars() {
  std::vector<std::unique_ptr<weft::context_var<std::uint64_t>>> v;
  for (int i = 0; i < kLevels; ++i) {
    v.push_back(std::make_unique<weft::context_var<std::uint64_t>>("level" + std::to_string(i)));
  }
  return v;
}
const auto level_vars = make_level_vars();

std::atomic<long> tree_wrong{0};
std::atomic<long> tree_fibers{0};

// node() checks that every ancestor's value is visible, binds its own, and fans out.
void tree_node(int level, std::uint64_t path) {
  ++tree_fibers;
  std::uint64_t prefix = path;
  for (int l = level - 1; l >= 0; --l) {
    prefix /= 10;
    const std::uint64_t* seen = level_vars[l]->try_get();
    if (seen == nullptr || *seen != prefix) ++tree_wrong;
  }
  for (int l = level; l < kLevels; ++l) {
    if (level_vars[l]->try_get() != nullptr) ++tree_wrong;  // no leak from siblings
  }
  if (level == kLevels) return;
  auto t = level_vars[level]->set(path);
  std::vector<weft::task<void>> kids;
  kids.reserve(10);
  for (int i = 0; i < 10; ++i)
    kids.push_back(weft::spawn(tree_node, level + 1, path * 10 + i));
  if (path % 7 == 0) weft::this_fiber::yield();
  for (auto& k : kids)
    k.get();
}

}  // namespace

TEST_CASE("a 1M-fiber spawn tree sees exactly its ancestors' values", "[.stress]") {
  const unsigned threads = GENERATE(2u, 4u);
  tree_wrong = 0;
  tree_fibers = 0;
  weft::executor_options o;
  o.threads = threads;
  o.stack_size = 32 * 1024;
  weft::executor ex(o);
  ex.run([] {
    auto t = level_vars[0]->set(0);  // the root binds level 0 = path 0
    std::vector<weft::task<void>> kids;
    for (int i = 0; i < 10; ++i)
      kids.push_back(weft::spawn(tree_node, 1, std::uint64_t(i)));
    for (auto& k : kids)
      k.get();
  });
  CHECK(tree_fibers == 1111110);
  CHECK(tree_wrong == 0);
}

// chain_consistent() checks a listed fiber's context: the levels bound are a prefix of
// level0..level5, and each is its parent's path with one more digit (tree_node()).
bool chain_consistent(const weft::fiber_info& f) {
  std::vector<std::uint64_t> levels;
  for (const auto& [name, value] : f.context) {
    if (name.rfind("level", 0) != 0) continue;
    if (name != "level" + std::to_string(levels.size())) return false;  // a gap
    levels.push_back(std::stoull(value));
  }
  for (std::size_t l = 1; l < levels.size(); ++l) {
    if (levels[l] / 10 != levels[l - 1]) return false;
  }
  return true;
}

TEST_CASE("listings of a 1M-fiber spawn tree while it runs: every context is consistent",
          "[.stress]") {
  tree_wrong = 0;
  tree_fibers = 0;
  weft::executor_options o;
  o.threads = 4;
  o.stack_size = 32 * 1024;
  weft::executor ex(o);
  std::atomic<bool> done{false};
  std::atomic<long> listed{0}, inconsistent{0}, listings{0};
  auto lister = [&] {
    for (const auto& f : ex.fibers()) {
      ++listed;
      if (f.context_known && !chain_consistent(f)) ++inconsistent;
    }
    ++listings;
  };
  std::thread outside([&] {
    while (!done)
      lister();
  });
  auto inside = ex.spawn([&] {
    while (!done) {
      lister();
      weft::this_fiber::sleep_for(1ms);
    }
  });
  ex.run([] {
    auto t = level_vars[0]->set(0);
    std::vector<weft::task<void>> kids;
    for (int i = 0; i < 10; ++i)
      kids.push_back(weft::spawn(tree_node, 1, std::uint64_t(i)));
    for (auto& k : kids)
      k.get();
  });
  done = true;
  outside.join();
  inside.get();
  CHECK(tree_fibers == 1111110);
  CHECK(tree_wrong == 0);
  CHECK(inconsistent == 0);
  CHECK(listings > 0);
  INFO("listings: " << listings << ", fibers listed: " << listed);
  CHECK(listed > 0);
}

TEST_CASE("100 rounds of submit from 3 threads, shutdown mid-flight, join: nothing lost",
          "[.stress]") {
  for (int round = 0; round < 100; ++round) {
    std::atomic<long> accepted{0}, refused{0}, completed{0}, children{0};
    {
      weft::executor ex(1 + round % 4);
      std::atomic<bool> go{false};
      std::vector<std::thread> submitters;
      for (int s = 0; s < 3; ++s) {
        submitters.emplace_back([&] {
          while (!go)
            std::this_thread::yield();
          for (;;) {
            try {
              ex.post([&] {
                weft::this_fiber::yield();
                weft::executor::current()->post([&] { ++children; });
                ++completed;
              });
              ++accepted;
            } catch (const weft::error& e) {
              if (e.code() == weft::errc::executor_closed) ++refused;
              return;
            }
          }
        });
      }
      go = true;
      std::this_thread::sleep_for(std::chrono::microseconds(200 + 50 * (round % 10)));
      ex.shutdown();
      for (auto& t : submitters)
        t.join();
      ex.join();
    }
    INFO("round " << round << ": accepted " << accepted.load());
    REQUIRE(refused == 3);
    if (round % 20 == 0) WARN("accepted " << accepted.load());
    REQUIRE(completed == accepted);
    REQUIRE(children == accepted);
  }
}

TEST_CASE("10k variables in one context, copied across 100k spawns; memory comes back",
          "[.stress]") {
  REQUIRE(test::counted_value::alive == 0);
  {
    std::vector<std::unique_ptr<weft::context_var<test::counted_value>>> vars;
    for (int i = 0; i < 10000; ++i) {
      vars.push_back(
          std::make_unique<weft::context_var<test::counted_value>>("big" + std::to_string(i)));
    }
    weft::executor ex(2);
    std::atomic<long> wrong{0};
    weft::context big;
    big.run([&] {
      for (int i = 0; i < 10000; ++i)
        (void)vars[i]->set(test::counted_value(i));
      for (int batch = 0; batch < 100; ++batch) {
        std::vector<weft::task<void>> tasks;
        for (int k = 0; k < 1000; ++k) {
          tasks.push_back(ex.spawn([&, k] {
            const int i = (k * 7919 + batch) % 10000;
            if (vars[i]->get().value != i) ++wrong;
            if (k % 10 == 0) (void)vars[i]->set(test::counted_value(-1));  // a private copy
          }));
        }
        for (auto& t : tasks)
          t.get();
      }
    });
    CHECK(wrong == 0);
    CHECK(test::counted_value::alive == 10000);  // only the context's own values are left
  }
  CHECK(test::counted_value::alive == 0);
}

TEST_CASE("1M spawn/get and 1M set/reset leave nothing behind", "[.stress]") {
  weft::executor ex(2);
  weft::context_var<test::counted_value> v("churn");
  ex.run([&] {
    for (int i = 0; i < 1000000; ++i) {
      auto t = v.set(test::counted_value(i));
      v.reset(t);
    }
    for (int i = 0; i < 1000; ++i) {
      std::vector<weft::task<int>> tasks;
      for (int k = 0; k < 1000; ++k)
        tasks.push_back(weft::spawn([k] { return k; }));
      long sum = 0;
      for (auto& t : tasks)
        sum += t.get();
      REQUIRE(sum == 999L * 1000 / 2);
    }
  });
  CHECK(test::counted_value::alive == 0);
}

namespace {
long resident_kib() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}
}  // namespace

TEST_CASE("the stacks of a burst of fibers give their memory back once the pool is idle",
          "[.stress]") {
  weft::executor_options o;
  o.threads = 2;
  o.stack_size = 32 * 1024;
  weft::executor ex(o);
  ex.run([] {});
  const long before = resident_kib();
  std::atomic<long> touched{0};
  ex.run([&] {
    weft::task_group burst;
    for (int i = 0; i < 20000; ++i) {
      burst.spawn([&] {
        volatile char buffer[16 * 1024];
        std::memset(const_cast<char*>(buffer), 1, sizeof buffer);
        ++touched;
        weft::this_fiber::sleep_for(1h);
      });
    }
    while (touched < 20000)
      weft::this_fiber::sleep_for(1ms);
    burst.cancel();
  });
  const long peak_mib = (resident_kib() - before) / 1024;
  long after_mib = peak_mib;
  for (int i = 0; i < 100 && after_mib > 80; ++i) {
    std::this_thread::sleep_for(50ms);
    after_mib = (resident_kib() - before) / 1024;
  }
  INFO("resident growth: " << peak_mib << " MiB after the burst, " << after_mib << " MiB idle");
#if !defined(__SANITIZE_ADDRESS__)  // ASan's shadow and quarantine change the resident set
  CHECK(peak_mib > 300);            // 20k x 16 KiB were really touched
  CHECK(after_mib < 100);           // only the hot 64 MiB of stacks (and the heap) stay
#endif
}

TEST_CASE("a fiber queued behind a busy one is always stolen by a sleeping worker", "[.stress]") {
  // Each round: worker A runs a fiber that queues a child and then spins without yielding
  // until the child ran; only the other worker can run it, and it is asleep. A lost wake-up
  // leaves the spinner waiting (bounded here, and counted).
  weft::executor ex(2);
  int lost = 0;
  for (int round = 0; round < 2000; ++round) {
    std::this_thread::sleep_for(std::chrono::microseconds(round % 7 == 0 ? 300 : 20));
    const bool ran = ex.run([] {
      std::atomic<bool> child_ran{false};
      auto child = weft::spawn([&] { child_ran = true; });
      const auto give_up = std::chrono::steady_clock::now() + 20s;
      while (!child_ran && std::chrono::steady_clock::now() < give_up) {
      }
      const bool ok = child_ran;
      child.get();
      return ok;
    });
    if (!ran) ++lost;
  }
  CHECK(lost == 0);
}

namespace {
std::size_t resident_mib() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE)) >> 20;
}
}  // namespace

TEST_CASE("switching fibers does not grow memory (sanitizer fake stacks are per fiber)",
          "[.stress]") {
  weft::executor ex(1);
  std::size_t after_warmup = 0;
  for (int round = 0; round < 6; ++round) {
    ex.run([] {
      std::vector<weft::task<void>> yielders;
      for (int f = 0; f < 4; ++f) {
        yielders.push_back(weft::spawn([] {
          for (int i = 0; i < 5000; ++i)
            weft::this_fiber::yield();
        }));
      }
      for (auto& t : yielders)
        t.get();
    });
    if (round == 1) after_warmup = resident_mib();
  }
  INFO("resident after warm-up " << after_warmup << " MiB, at the end " << resident_mib());
  CHECK(resident_mib() < after_warmup + 64);
}

TEST_CASE("deadlines and group cancellations racing: every error names a cause that happened",
          "[.stress]") {
  // Rounds of groups, each under a random deadline or none, with random nested deadlines in
  // the children, some groups cancelled at a random moment. Whatever each fiber sees must be
  // possible: deadline_exceeded only past a deadline in force, cancelled only in a group that
  // was cancelled or had a failing child, a normal return only once its own sleep was over.
  using clock_type = std::chrono::steady_clock;
  constexpr int kGroups = 40;
  constexpr int kChildren = 50;
  std::atomic<int> impossible{0}, deadlines{0}, cancels{0}, normal{0};
  const unsigned threads = GENERATE(1u, 2u, 4u);
  weft::executor ex(threads);
  for (int round = 0; round < 5; ++round) {
    ex.run([&, round] {
      weft::task_group outer;
      for (int gi = 0; gi < kGroups; ++gi) {
        outer.spawn([&, gi] {
          std::mt19937 rng(unsigned(round * 1000 + gi));
          auto ms = [&](int lo, int hi) {
            return std::chrono::milliseconds(std::uniform_int_distribution<int>(lo, hi)(rng));
          };
          const bool group_deadline = rng() % 2 == 0;
          const auto group_tp = clock_type::now() + ms(0, 20);
          std::atomic<bool> cancelled{false};  // g.cancel(), or a child failed (which cancels)
          auto body = [&] {
            weft::task_group g;
            for (int c = 0; c < kChildren; ++c) {
              const auto own = ms(0, 25);
              const auto nap = ms(0, 30);
              const bool nested = c % 3 == 0;
              g.spawn([&, c, own, nap, nested] {
                const auto start = clock_type::now();
                const auto in_force = weft::this_fiber::deadline();
                const auto own_tp = nested ? std::optional(start + own) : std::nullopt;
                try {
                  auto work = [&] {
                    if (c % 2 == 0) {
                      weft::this_fiber::sleep_for(nap);
                    } else {
                      weft::spawn([nap] { weft::this_fiber::sleep_for(nap); }).get();
                    }
                  };
                  if (nested) {
                    weft::with_deadline(*own_tp, work);
                  } else {
                    work();
                  }
                  ++normal;
                  if (clock_type::now() < start + nap) ++impossible;
                } catch (const weft::error& e) {
                  const auto now = clock_type::now();
                  if (e.code() == weft::errc::deadline_exceeded) {
                    ++deadlines;
                    const bool passed =
                        (in_force && now >= *in_force) || (own_tp && now >= *own_tp);
                    if (!passed) ++impossible;
                  } else if (e.code() == weft::errc::cancelled) {
                    ++cancels;
                    if (!cancelled.load()) ++impossible;
                  } else {
                    ++impossible;
                  }
                  cancelled = true;  // before the group hears of it and cancels the others
                  throw;
                }
              });
            }
            if (rng() % 3 == 0) {
              weft::this_fiber::sleep_for(ms(0, 15));
              cancelled = true;
              g.cancel();
            }
            try {
              g.wait();
            } catch (const weft::error&) {
            }
          };
          try {
            if (group_deadline) {
              weft::with_deadline(group_tp, body);
            } else {
              body();
            }
          } catch (const weft::error& e) {
            if (e.code() != weft::errc::deadline_exceeded) ++impossible;
          }
        });
      }
    });
  }
  INFO("deadlines " << deadlines << ", cancels " << cancels << ", normal " << normal);
  CHECK(impossible == 0);
  CHECK(deadlines > 0);
  CHECK(cancels > 0);
  CHECK(normal > 0);
}

TEST_CASE("channels under a storm of senders and receivers with selects and deadlines",
          "[.stress]") {
  // 4 workers, 2000 fibers and 2 plain threads for a few seconds: every value sent is received
  // exactly once, nothing is received that was not sent, and nobody hangs.
  weft::executor ex(4);
  weft::channel<long> a(0, "a"), b(16, "b");
  constexpr int kFibers = 2000;
  constexpr int kRounds = 1000;
  constexpr int kThreads = 2;  // plain threads take part too
  auto received = std::make_unique<std::atomic<int>[]>(std::size_t{kFibers + kThreads} * kRounds);
  std::atomic<long> sent{0}, got{0};
  auto body = [&](int id, std::uint32_t seed, int rounds) {
    std::mt19937 rng(seed);
    for (int r = 0; r < rounds; ++r) {
      const long v = long(id) * kRounds + r;
      try {
        switch (rng() % 4) {
          case 0:
            weft::with_timeout(std::chrono::microseconds(rng() % 300), [&] {
              return weft::select(weft::send_case(a, v), weft::send_case(b, v));
            });
            ++sent;
            break;
          case 1:
            if ((rng() % 2 == 0 ? a : b).try_send(v)) ++sent;
            break;
          default: {
            std::optional<long> x;
            weft::with_timeout(std::chrono::microseconds(rng() % 300), [&] {
              return weft::select(weft::recv_case(a, x), weft::recv_case(b, x));
            });
            if (x) {
              ++received[std::size_t(*x)];
              ++got;
            }
          }
        }
      } catch (const weft::error& e) {
        if (e.code() != weft::errc::deadline_exceeded && e.code() != weft::errc::cancelled) throw;
      }
    }
  };
  std::thread t1(body, kFibers, 77u, kRounds), t2(body, kFibers + 1, 78u, kRounds);
  ex.run([&] {
    weft::task_group g;
    for (int id = 0; id < kFibers; ++id)
      g.spawn(body, id, std::uint32_t(id), kRounds);
    g.wait();
  });
  t1.join();
  t2.join();
  a.close();
  b.close();
  while (std::optional<long> x = b.recv()) {
    ++received[std::size_t(*x)];
    ++got;
  }
  long twice = 0;
  for (std::size_t i = 0; i < std::size_t{kFibers + kThreads} * kRounds; ++i) {
    twice += received[i] > 1;
  }
  CHECK(twice == 0);
  CHECK(got == sent);
}

TEST_CASE("a mutex and a condition variable shared by 1000 migrating fibers lose nothing",
          "[.stress]") {
  weft::executor ex(4);
  weft::mutex m("m");
  weft::condition_variable cv("cv");
  long tokens = 0, consumed = 0, produced = 0;  // guarded by m
  constexpr int kProducers = 500, kConsumers = 500, kEach = 200;
  ex.run([&] {
    weft::task_group g;
    for (int p = 0; p < kProducers; ++p) {
      g.spawn([&] {
        for (int i = 0; i < kEach; ++i) {
          {
            std::lock_guard<weft::mutex> lk(m);
            ++tokens;
            ++produced;
            if (i % 16 == 0) weft::this_fiber::yield();  // held across a switch
          }
          cv.notify_one();
        }
      });
    }
    for (int c = 0; c < kConsumers; ++c) {
      g.spawn([&] {
        for (int i = 0; i < kEach; ++i) {
          std::unique_lock<weft::mutex> lk(m);
          cv.wait(lk, [&] { return tokens > 0; });
          --tokens;
          ++consumed;
        }
      });
    }
    g.wait();
  });
  CHECK(produced == long{kProducers} * kEach);
  CHECK(consumed == long{kConsumers} * kEach);
  CHECK(tokens == 0);
}

TEST_CASE("a plain thread that wakes the last fiber may still be waking it when the executor goes",
          "[.stress]") {
  // The waker queues the fiber and then wakes a worker; meanwhile the fiber can run, end, and
  // let the executor be destroyed. The pool must wait for the waker (a use-after-free before:
  // SIGSEGV in worker_slot::wake under MALLOC_PERTURB_, which meson test sets). The sleep
  // lets the fiber park and its worker fall asleep first, so that most rounds take the
  // wake-up path (a worker still spinning for work is not woken). The race is narrow: the
  // unfixed pool crashed in about 1 of 10,000 rounds.
  const int rounds = 20000;
  for (int round = 0; round < rounds; ++round) {
    auto sem = std::make_shared<weft::semaphore>(0, "handoff");
    std::atomic<bool> woke{false};
    std::thread waker;
    {
      weft::executor ex(1);
      ex.run([&] {
        waker = std::thread([sem] {
          std::this_thread::sleep_for(200us);
          sem->release();
        });
        sem->acquire();
        woke = true;
      });
    }
    CHECK(woke);
    waker.join();
  }
}
