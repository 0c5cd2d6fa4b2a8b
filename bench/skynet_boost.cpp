// skynet_boost: the baseline -- the same skynet on raw Boost.Fiber with the stock
// work_stealing algorithm, the same stack size, all threads taking part. Runs in its own
// process because work_stealing keeps its state in static members.
//
// usage: skynet_boost [threads] [leaves] [stack KiB] [post|dispatch]
//   prints: skynet <leaves> <sum> <seconds>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <boost/fiber/all.hpp>

namespace {

boost::fibers::fixedsize_stack* stacks;
boost::fibers::launch policy = boost::fibers::launch::post;

void skynet(long& result, long num, long size) {
  if (size == 1) {
    result = num;
    return;
  }
  std::array<long, 10> sums{};
  std::array<boost::fibers::fiber, 10> kids;
  const long child = size / 10;
  for (long i = 0; i < 10; ++i) {
    kids[i] = boost::fibers::fiber(policy, std::allocator_arg, *stacks, skynet, std::ref(sums[i]),
                                   num + i * child, child);
  }
  result = 0;
  for (long i = 0; i < 10; ++i) {
    kids[i].join();
    result += sums[i];
  }
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned threads = argc > 1 ? unsigned(std::atol(argv[1])) : 2;
  const long leaves = argc > 2 ? std::atol(argv[2]) : 1000000;
  boost::fibers::fixedsize_stack salloc((argc > 3 ? std::size_t(std::atol(argv[3])) : 32) * 1024);
  stacks = &salloc;
  if (argc > 4 && std::strcmp(argv[4], "dispatch") == 0) policy = boost::fibers::launch::dispatch;

  std::atomic<bool> done{false};
  boost::fibers::mutex m;
  boost::fibers::condition_variable_any cv;
  std::vector<std::thread> helpers;
  for (unsigned i = 1; i < threads; ++i) {
    helpers.emplace_back([&] {
      boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(threads, true);
      std::unique_lock<boost::fibers::mutex> lk(m);
      cv.wait(lk, [&] { return done.load(); });
    });
  }
  boost::fibers::use_scheduling_algorithm<boost::fibers::algo::work_stealing>(threads, true);
  const auto start = std::chrono::steady_clock::now();
  long sum = 0;
  boost::fibers::fiber(std::allocator_arg, salloc, skynet, std::ref(sum), 0L, leaves).join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  {
    std::unique_lock<boost::fibers::mutex> lk(m);
    done = true;
  }
  cv.notify_all();
  for (auto& t : helpers)
    t.join();
  std::printf("skynet %ld %ld %.4f\n", leaves, sum, secs);
  return sum == leaves * (leaves - 1) / 2 ? 0 : 1;
}
