// memory: peak memory of many sleeping fibers. Each fiber touches 16 KiB of its stack and
// sleeps; the program reports the peak RSS growth per fiber and what is left after the
// touched stack pages are subtracted.
//
// usage: memory [fibers] [threads]     prints: memory <fibers> <KiB per fiber> <KiB beyond 16>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <weft/weft.hpp>

namespace {

long peak_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

void touch_and_sleep() {
  volatile char buffer[16 * 1024 - 512];  // about 16 KiB of the stack, the frame included
  std::memset(const_cast<char*>(buffer), 1, sizeof buffer);
  weft::this_fiber::sleep_for(std::chrono::milliseconds(500));
  buffer[0] = 2;
}

}  // namespace

int main(int argc, char** argv) {
  const long fibers = argc > 1 ? std::atol(argv[1]) : 100000;
  weft::executor_options o;
  o.threads = argc > 2 ? unsigned(std::atol(argv[2])) : 2;
  o.stack_size = 32 * 1024;
  weft::executor ex(o);
  ex.run([] {});
  const long before = peak_rss_kib();
  ex.run([fibers] {
    std::vector<weft::task<void>> all;
    all.reserve(std::size_t(fibers));
    for (long i = 0; i < fibers; ++i)
      all.push_back(weft::spawn(touch_and_sleep));
    for (auto& t : all)
      t.get();
  });
  const double per_fiber = double(peak_rss_kib() - before) / double(fibers);
  std::printf("memory %ld %.2f %.2f\n", fibers, per_fiber, per_fiber - 16.0);
  return 0;
}
