// gdb_target: a program for gdb_e2e.py (and docs/debugging.md) that parks fibers at known
// places, waits until they are all parked, and then stops itself for a debugger.
//
//   gdb_target            raise(SIGTRAP) once parked: run it under gdb (`gdb -ex run`)
//   gdb_target --wait     print "parked <pid>" and sleep until killed: attach gdb to it
//
// Its fibers, all of executor "gdb-target" (2 workers):
//   supervisor   request_id=req-42 attempt=3 blob=<vector>, waits for its children: "task: get"
//   2 consumers  parked in gdb_target_consume(), in jobs.recv(): "channel jobs: recv"
//   sleeper      parked in gdb_target_nap(), in sleep_for(1h): "sleep"
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

using namespace std::chrono_literals;

namespace {

weft::context_var<std::string> request_id("request_id");
weft::context_var<int> attempt("attempt");
weft::context_var<std::vector<int>> blob("blob");  // no operator<<: unprintable

// The functions a debugger must find on the parked fibers' stacks.
[[gnu::noinline]] int gdb_target_consume(weft::channel<int>& jobs, int worker) {
  auto t = attempt.set(worker);
  const std::optional<int> job = jobs.recv();
  asm volatile("" ::: "memory");  // keep the frame: the recv is not a tail call
  return job.value_or(-1) + worker;
}

[[gnu::noinline]] void gdb_target_nap() {
  weft::this_fiber::sleep_for(1h);
  asm volatile("" ::: "memory");
}

// parked() is true once the four fibers wait where they should.
bool parked(const weft::executor& ex) {
  int recv = 0, sleep = 0, task = 0;
  for (const weft::fiber_info& f : ex.fibers()) {
    if (f.state != weft::fiber_state::suspended) continue;
    if (f.waiting_on == "channel jobs: recv") ++recv;
    if (f.waiting_on == "sleep") ++sleep;
    if (f.waiting_on.rfind("task", 0) == 0) ++task;
  }
  return recv == 2 && sleep == 1 && task == 1;
}

}  // namespace

int main(int argc, char** argv) {
  const bool wait = argc > 1 && std::strcmp(argv[1], "--wait") == 0;
  weft::executor_options options;
  options.threads = 2;
  options.name = "gdb-target";
  weft::executor ex(options);
  weft::channel<int> jobs(0, "jobs");

  auto supervisor = ex.spawn([&] {
    auto id = request_id.set("req-42");
    auto n = attempt.set(3);
    auto b = blob.set(std::vector<int>{1, 2, 3});
    auto c1 = weft::spawn([&] { return gdb_target_consume(jobs, 1); });
    auto c2 = weft::spawn([&] { return gdb_target_consume(jobs, 2); });
    auto s = weft::spawn([] { gdb_target_nap(); });
    return c1.get() + c2.get();
  });

  while (!parked(ex))
    std::this_thread::sleep_for(1ms);
  if (wait) {
    std::printf("parked %d\n", static_cast<int>(::getpid()));
    std::fflush(stdout);
    for (;;)
      ::pause();
  }
  std::raise(SIGTRAP);  // the debugger looks now; it kills the program afterwards
  return 0;
}
