// deadlines: many fibers, each asleep under its own deadline.
//
// usage: deadlines memory <fibers> <threads> <plain|deadline>
//   Each fiber touches 16 KiB of its stack and sleeps; `plain` sleeps until cancelled,
//   `deadline` sleeps under a distinct deadline an hour away (with_deadline), so the two runs
//   differ only by the deadline. prints: memory-<mode> <fibers> <KiB/fiber resident growth>
// usage: deadlines lateness <fibers> <threads>
//   Each fiber sleeps under a deadline drawn uniformly from 50..1050 ms after its start and
//   records how late its sleep ended (deadline_exceeded) after the deadline.
//   prints: lateness <fibers> <p50 ms> <p99 ms> <max ms> <early count>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <weft/weft.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

long resident_kib() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

std::atomic<long> touched{0};

void touch_and_sleep(clock_type::time_point until) {
  volatile char buffer[16 * 1024 - 512];
  std::memset(const_cast<char*>(buffer), 1, sizeof buffer);
  ++touched;
  try {
    weft::this_fiber::sleep_until(until);
  } catch (const weft::error&) {
  }
}

int memory(long fibers, unsigned threads, bool with_deadline) {
  weft::executor_options o;
  o.threads = threads;
  o.stack_size = 32 * 1024;
  weft::executor ex(o);
  ex.run([] {});
  const long before = resident_kib();
  double per_fiber = 0;
  ex.run([&] {
    weft::task_group group;
    const auto far = clock_type::now() + std::chrono::hours(1);
    for (long i = 0; i < fibers; ++i) {
      if (with_deadline) {
        // A distinct deadline per fiber; the sleep itself would last longer.
        const auto tp = far + std::chrono::microseconds(i);
        group.spawn(
            [tp] { weft::with_deadline(tp, touch_and_sleep, clock_type::time_point::max()); });
      } else {
        group.spawn(touch_and_sleep, clock_type::time_point::max());
      }
    }
    while (touched < fibers)
      weft::this_fiber::sleep_for(std::chrono::milliseconds(1));
    per_fiber = double(resident_kib() - before) / double(fibers);
    group.cancel();
  });
  std::printf("memory-%s %ld %.3f\n", with_deadline ? "deadline" : "plain", fibers, per_fiber);
  return 0;
}

int lateness(long fibers, unsigned threads) {
  weft::executor ex(threads);
  std::vector<double> late_ms(std::size_t(fibers), 0.0);
  std::atomic<long> early{0};
  ex.run([&] {
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> offset_us(50000, 1050000);
    weft::task_group group;
    for (long i = 0; i < fibers; ++i) {
      // The deadline counts from the fiber's start: the time spawning takes is not lateness.
      const auto offset = std::chrono::microseconds(offset_us(rng));
      group.spawn([&, i, offset] {
        const auto tp = clock_type::now() + offset;
        try {
          weft::with_deadline(tp, [] { weft::this_fiber::sleep_for(std::chrono::hours(1)); });
        } catch (const weft::error&) {
        }
        const auto now = clock_type::now();
        if (now < tp) ++early;
        late_ms[std::size_t(i)] = std::chrono::duration<double, std::milli>(now - tp).count();
      });
    }
  });
  std::sort(late_ms.begin(), late_ms.end());
  auto at = [&](double q) { return late_ms[std::size_t(q * double(late_ms.size() - 1))]; };
  std::printf("lateness %ld %.3f %.3f %.3f %ld\n", fibers, at(0.5), at(0.99), late_ms.back(),
              early.load());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "lateness";
  const long fibers = argc > 2 ? std::atol(argv[2]) : 10000;
  const unsigned threads = argc > 3 ? unsigned(std::atol(argv[3])) : 2;
  if (mode == "memory")
    return memory(fibers, threads, argc > 4 && std::string(argv[4]) == "deadline");
  if (mode == "lateness") return lateness(fibers, threads);
  std::fprintf(stderr,
               "usage: deadlines memory <fibers> <threads> <plain|deadline>\n"
               "       deadlines lateness <fibers> <threads>\n");
  return 2;
}
