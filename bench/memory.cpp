// memory: resident memory of many sleeping fibers. Each fiber touches 16 KiB of its stack
// and sleeps until cancelled. With all of them alive the program reads the resident set and
// the bytes held by malloc: per fiber, the resident growth, the part that is heap (task and
// group bookkeeping: everything beyond the touched stack pages) and the rest (stack pages,
// including the fiber's record and Boost's context at the top of its stack). Then it
// cancels them and reports what stays resident once the pool is idle again.
//
// usage: memory [fibers] [threads] [touch|idle] [stack KiB]
//   prints: memory <fibers> <KiB/fiber resident> <KiB/fiber heap> <KiB/fiber stack pages>
//           <MiB resident after, idle> <ns per fiber to spawn them all and see each run>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include <weft/weft.hpp>

namespace {

long resident_kib() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

long heap_bytes() {
  const struct mallinfo2 m = mallinfo2();
  return long(m.uordblks + m.hblkhd);
}

std::atomic<long> touched{0};

void idle() {
  ++touched;
  weft::this_fiber::sleep_for(std::chrono::hours(1));  // until the group is cancelled
}

void touch_and_sleep() {
  volatile char buffer[16 * 1024 - 512];  // about 16 KiB of the stack, the frame included
  std::memset(const_cast<char*>(buffer), 1, sizeof buffer);
  ++touched;
  weft::this_fiber::sleep_for(std::chrono::hours(1));  // until the group is cancelled
}

}  // namespace

int main(int argc, char** argv) {
  const long fibers = argc > 1 ? std::atol(argv[1]) : 100000;
  weft::executor_options o;
  o.threads = argc > 2 ? unsigned(std::atol(argv[2])) : 2;
  // touch: each fiber uses 16 KiB of its stack; idle: it only parks (a server's idle
  // connection), so what remains is what weft itself keeps per fiber.
  const bool idle_only = argc > 3 && std::strcmp(argv[3], "idle") == 0;
  o.stack_size = std::size_t(argc > 4 ? std::atol(argv[4]) : 32) * 1024;
  weft::executor ex(o);
  ex.run([] {});
  const long before = resident_kib();
  const long heap_before = heap_bytes();
  double per_fiber = 0, heap_per_fiber = 0;
  double spawn_ns = 0;
  ex.run([&] {
    weft::task_group group;
    const auto start = std::chrono::steady_clock::now();
    for (long i = 0; i < fibers; ++i)
      group.spawn(idle_only ? idle : touch_and_sleep);
    while (touched < fibers)
      weft::this_fiber::yield();
    spawn_ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count() /
        double(fibers);
    per_fiber = double(resident_kib() - before) / double(fibers);
    heap_per_fiber = double(heap_bytes() - heap_before) / 1024.0 / double(fibers);
    group.cancel();
  });
  // Idle workers give the stacks' pages back a batch at a time; where each madvise is slow
  // (a virtual machine's TLB shootdowns) that takes seconds for 100k stacks. Wait until the
  // resident set stops shrinking (at most 30 s).
  long last = resident_kib();
  for (int i = 0; i < 150; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const long now = resident_kib();
    if (now >= last && i >= 5) break;
    last = now;
  }
  const double after_mib = double(resident_kib() - before) / 1024.0;
  std::printf("memory %ld %.2f %.2f %.2f %.1f %.0f\n", fibers, per_fiber, heap_per_fiber,
              per_fiber - heap_per_fiber, after_mib, spawn_ns);
  return 0;
}
