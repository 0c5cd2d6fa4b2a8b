// thread_local_migration: why thread_local is wrong for fibers, and what replaces it.
//
// Each fiber stores its own number in a thread_local, a fiber_local and a context_var, then
// yields many times. The pool has 4 workers, so fibers move between threads: the
// thread_local then shows another fiber's number (or the old thread's), while fiber_local
// and context_var always show the fiber's own.
//
// Run: ./build/examples/thread_local_migration
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

thread_local int tl_value = -1;               // wrong: one per thread, shared by its fibers
weft::fiber_local<int> fl_value;              // right: one per fiber
weft::context_var<int> cv_value("cv_value");  // right: inherited, immutable per snapshot

// A non-inlined read: glibc lets the compiler fold repeated pthread_self() calls.
[[gnu::noipa]] std::thread::id thread_now() {
  return std::this_thread::get_id();
}

int main() {
  weft::executor ex(4);
  std::atomic<int> moved{0}, tl_wrong{0}, fl_wrong{0}, cv_wrong{0};
  std::vector<weft::task<void>> fibers;
  for (int i = 0; i < 200; ++i) {
    fibers.push_back(ex.spawn([&, i] {
      tl_value = i;
      fl_value.get() = i;
      (void)cv_value.set(i);
      const auto start = thread_now();
      for (int k = 0; k < 100; ++k) {
        weft::this_fiber::yield();
        if (k % 25 == 0) weft::this_fiber::sleep_for(std::chrono::microseconds(50));
        if (tl_value != i) ++tl_wrong;
        if (fl_value.get() != i) ++fl_wrong;
        if (cv_value.get() != i) ++cv_wrong;
      }
      if (thread_now() != start) ++moved;
    }));
  }
  for (auto& f : fibers)
    f.get();
  std::printf("200 fibers, 100 yields each, %d ended on another thread than they started on\n",
              moved.load());
  std::printf("  thread_local  wrong reads: %5d\n", tl_wrong.load());
  std::printf("  fiber_local   wrong reads: %5d\n", fl_wrong.load());
  std::printf("  context_var   wrong reads: %5d\n", cv_wrong.load());
  return fl_wrong == 0 && cv_wrong == 0 ? 0 : 1;
}
