// pingpong: two fibers pass a token back and forth through a pair of channels -- the cost of
// waking a fiber, mostly on another worker thread (cross-thread wake latency).
//
// usage: pingpong weft|boost [round trips]
// prints: pingpong <kind> <ns per round trip> <share of hops between threads>
//   weft   two fibers of a 2-worker executor (they go where the scheduler puts them; the
//          share of hops that crossed threads is measured and printed)
//   boost  raw Boost.Fiber: one fiber on each of two threads (every hop crosses)
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <boost/fiber/all.hpp>

#include <weft/weft.hpp>

namespace {

using channel = boost::fibers::buffered_channel<long>;

// side() is one player: it sends on `out`, receives on `in`, and counts the hops whose two
// ends ran on different threads.
struct hop_counter {
  std::atomic<std::thread::id> last_sender{};
  std::atomic<long> crossed{0};
  void sent() { last_sender.store(std::this_thread::get_id(), std::memory_order_relaxed); }
  void received() {
    if (last_sender.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
      crossed.fetch_add(1, std::memory_order_relaxed);
    }
  }
};

void serve(channel& in, channel& out, long n, hop_counter& hops) {
  for (long i = 0; i < n; ++i) {
    long v = 0;
    in.pop(v);
    hops.received();
    hops.sent();
    out.push(v + 1);
  }
}

void ask(channel& in, channel& out, long n, hop_counter& hops) {
  for (long i = 0; i < n; ++i) {
    hops.sent();
    out.push(i);
    long v = 0;
    in.pop(v);
    hops.received();
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool weft_kind = argc < 2 || std::strcmp(argv[1], "weft") == 0;
  const long n = argc > 2 ? std::atol(argv[2]) : 200000;
  channel ping(2), pong(2);
  hop_counter hops;
  const auto start = std::chrono::steady_clock::now();
  if (weft_kind) {
    weft::executor ex(2);
    auto a = ex.spawn([&] { ask(pong, ping, n, hops); });
    auto b = ex.spawn([&] { serve(ping, pong, n, hops); });
    a.get();
    b.get();
  } else {
    std::thread t1([&] { boost::fibers::fiber([&] { ask(pong, ping, n, hops); }).join(); });
    std::thread t2([&] { boost::fibers::fiber([&] { serve(ping, pong, n, hops); }).join(); });
    t1.join();
    t2.join();
  }
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  std::printf("pingpong %s %.0f %.2f\n", weft_kind ? "weft" : "boost", ns / double(n),
              double(hops.crossed.load()) / double(2 * n));
  return 0;
}
