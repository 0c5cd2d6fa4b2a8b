// tsan_race: proves that a ThreadSanitizer build of weft sees data races between fibers.
//
//   tsan_race racy    two fibers on two workers write one plain int with no synchronization:
//                     TSan must report a data race naming both writers (tsan_race.py)
//   tsan_race fixed   the same writes under a weft::mutex: TSan must report nothing
//
// The two fibers meet first (relaxed atomics, which order nothing for TSan): both are then
// running at once, so they sit on the two workers and nothing weft does in between -- no
// switch, no queue -- can order one write before the other.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include <weft/weft.hpp>

namespace {

int counter = 0;  // plain: the race is on it
weft::mutex counter_mutex;
std::atomic<int> arrived{0};

bool meet() {
  arrived.fetch_add(1, std::memory_order_relaxed);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (arrived.load(std::memory_order_relaxed) < 2) {
    if (std::chrono::steady_clock::now() > give_up) return false;
  }
  return true;
}

__attribute__((noinline)) void fiber_a_writes_counter(bool locked) {
  if (locked) {
    std::lock_guard<weft::mutex> g(counter_mutex);
    counter = counter + 1;
  } else {
    counter = counter + 1;
  }
}

__attribute__((noinline)) void fiber_b_writes_counter(bool locked) {
  if (locked) {
    std::lock_guard<weft::mutex> g(counter_mutex);
    counter = counter + 2;
  } else {
    counter = counter + 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || (std::strcmp(argv[1], "racy") != 0 && std::strcmp(argv[1], "fixed") != 0)) {
    std::fprintf(stderr, "usage: tsan_race racy|fixed\n");
    return 2;
  }
  const bool locked = std::strcmp(argv[1], "fixed") == 0;
  weft::executor ex(2);
  auto a = ex.spawn([locked] {
    const bool met = meet();
    fiber_a_writes_counter(locked);
    return met;
  });
  auto b = ex.spawn([locked] {
    const bool met = meet();
    fiber_b_writes_counter(locked);
    return met;
  });
  const bool met = a.get() && b.get();
  if (!met) {
    std::fprintf(stderr, "tsan_race: the two fibers never ran at the same time\n");
    return 3;
  }
  std::printf("counter = %d\n", counter);
  return counter == 3 ? 0 : 4;
}
