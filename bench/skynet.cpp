// skynet: the fiber-runtime stress benchmark on weft. Each fiber spawns 10 children and
// sums their results, down to `leaves` leaf fibers (1M leaves = 1,111,111 fibers).
//
// usage: skynet [threads] [leaves] [stack KiB] [counters|warm]
// prints: skynet <leaves> <sum> <seconds>; with `counters`, each worker's counters on stderr;
// with `warm`, the timed run is the second of two in the same pool: what a fiber costs once
// the pool's stacks are carved and touched (the first run of 10k leaves spends half its time
// on that, a 1M-leaf run a few percent).
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <weft/weft.hpp>

namespace {

long skynet(long num, long size) {
  if (size == 1) return num;
  std::array<weft::task<long>, 10> kids;
  const long child = size / 10;
  for (long i = 0; i < 10; ++i)
    kids[i] = weft::spawn(skynet, num + i * child, child);
  long sum = 0;
  for (auto& k : kids)
    sum += k.get();
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  weft::executor_options o;
  o.threads = argc > 1 ? unsigned(std::atol(argv[1])) : 2;
  const long leaves = argc > 2 ? std::atol(argv[2]) : 1000000;
  o.stack_size = (argc > 3 ? std::size_t(std::atol(argv[3])) : 32) * 1024;
  weft::executor ex(o);
  // The pool's threads start and take their first work outside the measurement: the cost per
  // fiber of a 10k-leaf run was mostly the pool's start-up (README "cost per fiber" row).
  ex.run([] {});
  const std::string mode = argc > 4 ? argv[4] : "";
  if (mode == "warm") (void)ex.run(skynet, 0L, leaves);
  const auto start = std::chrono::steady_clock::now();
  const long sum = ex.run(skynet, 0L, leaves);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("skynet %ld %ld %.4f\n", leaves, sum, secs);
  if (mode == "counters") {
    // How the work spread: per worker, fibers started, stolen, and times it ran dry.
    for (const weft::worker_stats& w : ex.workers()) {
      std::fprintf(stderr, "  worker %u: spawned %llu, steals %llu, sleeps %llu\n", w.index,
                   static_cast<unsigned long long>(w.spawned),
                   static_cast<unsigned long long>(w.steals),
                   static_cast<unsigned long long>(w.sleeps));
    }
  }
  return sum == leaves * (leaves - 1) / 2 ? 0 : 1;
}
