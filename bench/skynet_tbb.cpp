// skynet on oneTBB's task_group: stackless tasks, no fiber stacks to switch or map -- the
// floor for the bookkeeping of a million tasks, to put weft's figures in perspective.
//
// usage: skynet_tbb [threads] [leaves]   prints: skynet <leaves> <sum> <seconds>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <tbb/global_control.h>
#include <tbb/task_group.h>

namespace {

long skynet(long num, long size) {
  if (size == 1) return num;
  std::array<long, 10> results{};
  const long child = size / 10;
  tbb::task_group g;
  for (long i = 0; i < 10; ++i)
    g.run([&results, i, num, child] { results[std::size_t(i)] = skynet(num + i * child, child); });
  g.wait();
  long sum = 0;
  for (long r : results)
    sum += r;
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const long leaves = argc > 2 ? std::atol(argv[2]) : 1000000;
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, std::size_t(threads));
  const auto start = std::chrono::steady_clock::now();
  const long sum = skynet(0, leaves);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("skynet %ld %ld %.4f\n", leaves, sum, secs);
  return sum == leaves * (leaves - 1) / 2 ? 0 : 1;
}
