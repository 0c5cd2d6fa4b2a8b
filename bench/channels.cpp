// channels: fibers talking to each other, on a 2-worker executor -- the peer of
// bench/channels.go (goroutines, GOMAXPROCS=2), the same work on both sides.
//
// usage: bench_channels MODE KIND [n]
//   MODE  pingpong  two fibers pass a token through two unbuffered channels; ns per round trip
//         mpmc      4 producers x 4 consumers over one channel of capacity 1024; messages/s
//         pool      1 producer, 100 workers, a job channel of capacity 64, ~1 us of work per
//                   job, a results channel read by a collector; jobs/s
//         mutex     100 fibers lock, increment, unlock one mutex; ns per lock+unlock pair
//         select    4 producers feed 4 unbuffered channels, one consumer selects over them;
//                   ns per value
//   KIND  weft      weft::channel / weft::select / weft::mutex
//         boost     the same program on Boost.Fiber's primitives (buffered_channel,
//                   unbuffered_channel, boost::fibers::mutex) in the same weft executor --
//                   what users had before; no select there
// prints: <mode> <kind> <figure> [share of ping-pong hops that crossed threads]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/fiber/all.hpp>

#include <weft/weft.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// spin_work() is about a microsecond of arithmetic the compiler cannot drop.
std::uint64_t spin_work(std::uint64_t seed) {
  std::uint64_t x = seed | 1;
  for (int i = 0; i < 330; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

// The two families of channels behind one face: send / recv / close.
template <class T>
struct weft_chan {
  explicit weft_chan(std::size_t cap) : ch(cap) {}
  void send(T v) { ch.send(std::move(v)); }
  std::optional<T> recv() { return ch.recv(); }
  void close() { ch.close(); }
  weft::channel<T> ch;
};

template <class T>
struct boost_chan {
  // Boost's buffered_channel needs a power of two >= 2 and holds one less; unbuffered_channel
  // is its rendezvous.
  explicit boost_chan(std::size_t cap) {
    if (cap == 0) {
      un.emplace();
    } else {
      std::size_t p = 2;
      while (p < cap + 1)
        p *= 2;
      buf.emplace(p);
    }
  }
  void send(T v) {
    if (un) {
      un->push(std::move(v));
    } else {
      buf->push(std::move(v));
    }
  }
  std::optional<T> recv() {
    T v{};
    const auto st = un ? un->pop(v) : buf->pop(v);
    if (st != boost::fibers::channel_op_status::success) return std::nullopt;
    return v;
  }
  void close() {
    if (un) {
      un->close();
    } else {
      buf->close();
    }
  }
  std::optional<boost::fibers::unbuffered_channel<T>> un;
  std::optional<boost::fibers::buffered_channel<T>> buf;
};

// running_thread() is the thread running the caller now. Not std::this_thread::get_id()
// inline: glibc declares pthread_self() const, so the compiler read it once per loop, before
// the fiber's first switch, and a fiber that moved workers went on reporting its old thread
// (the ping-pong's hops counted as 100% crossing while both fibers shared one worker).
[[gnu::noinline]] std::thread::id running_thread() {
  asm volatile("" ::: "memory");
  return std::this_thread::get_id();
}

struct hop_counter {
  std::atomic<std::thread::id> last{};
  std::atomic<long> crossed{0};
  void sent() { last.store(running_thread(), std::memory_order_relaxed); }
  void received() {
    if (last.load(std::memory_order_relaxed) != running_thread())
      crossed.fetch_add(1, std::memory_order_relaxed);
  }
};

// print_stats() shows the executor's sleeps and steals with WEFT_BENCH_STATS set.
void print_stats(weft::executor& ex) {
  if (std::getenv("WEFT_BENCH_STATS") == nullptr) return;
  const weft::executor_stats st = ex.stats();
  std::fprintf(stderr, "sleeps %llu steals %llu\n", static_cast<unsigned long long>(st.sleeps),
               static_cast<unsigned long long>(st.steals));
}

// pingpong_run() passes the token n times; with a counter, it also notes which hops crossed
// threads (a call and two atomics per hop: not in the timed run, which does what Go's does).
template <template <class> class Chan>
double pingpong_run(weft::executor& ex, long n, hop_counter* hops) {
  Chan<long> ping(0), pong(0);
  const auto start = clock_type::now();
  auto a = ex.spawn([&] {
    for (long i = 0; i < n; ++i) {
      if (hops != nullptr) hops->sent();
      ping.send(i);
      pong.recv();
      if (hops != nullptr) hops->received();
    }
    ping.close();
  });
  auto b = ex.spawn([&] {
    while (auto v = ping.recv()) {
      if (hops != nullptr) {
        hops->received();
        hops->sent();
      }
      pong.send(*v + 1);
    }
  });
  a.get();
  b.get();
  return seconds_since(start);
}

template <template <class> class Chan>
void pingpong(weft::executor& ex, long n, const char* kind) {
  const double seconds = pingpong_run<Chan>(ex, n, nullptr);
  print_stats(ex);
  hop_counter hops;
  const long counted = std::max(1L, n / 10);
  pingpong_run<Chan>(ex, counted, &hops);
  std::printf("pingpong %s %.0f %.2f\n", kind, seconds * 1e9 / double(n),
              double(hops.crossed.load()) / double(2 * counted));
}

template <template <class> class Chan>
void mpmc(weft::executor& ex, long n, const char* kind) {
  Chan<long> ch(1024);
  std::atomic<long> sum{0};
  const long per = n / 4;
  const auto start = clock_type::now();
  ex.run([&] {
    weft::task_group producers, consumers;
    for (int c = 0; c < 4; ++c) {
      consumers.spawn([&] {
        long s = 0;
        while (auto v = ch.recv())
          s += *v;
        sum += s;
      });
    }
    for (int p = 0; p < 4; ++p) {
      producers.spawn([&] {
        for (long i = 0; i < per; ++i)
          ch.send(i);
      });
    }
    producers.wait();
    ch.close();
    consumers.wait();
  });
  const double s = seconds_since(start);
  if (sum != 4 * (per * (per - 1) / 2)) std::fprintf(stderr, "mpmc: wrong sum\n");
  std::printf("mpmc %s %.0f\n", kind, double(4 * per) / s);
}

template <template <class> class Chan>
void pool(weft::executor& ex, long n, const char* kind) {
  Chan<long> jobs(64), results(64);
  std::uint64_t check = 0;
  const auto start = clock_type::now();
  ex.run([&] {
    weft::task_group workers;
    for (int w = 0; w < 100; ++w) {
      workers.spawn([&] {
        while (auto j = jobs.recv())
          results.send(static_cast<long>(spin_work(std::uint64_t(*j))));
      });
    }
    auto collector = weft::spawn([&] {
      std::uint64_t c = 0;
      for (long i = 0; i < n; ++i)
        c += static_cast<std::uint64_t>(*results.recv());
      return c;
    });
    for (long i = 0; i < n; ++i)
      jobs.send(i);
    jobs.close();
    workers.wait();
    check = collector.get();
  });
  const double s = seconds_since(start);
  std::printf("pool %s %.0f\n", kind, double(n) / s);
  if (check == 1) std::fprintf(stderr, "(unlikely)\n");
}

template <class Mutex>
void mutex_bench(weft::executor& ex, long n, const char* kind) {
  Mutex m;
  long counter = 0;
  const long per = n / 100;
  const auto start = clock_type::now();
  ex.run([&] {
    weft::task_group g;
    for (int f = 0; f < 100; ++f) {
      g.spawn([&] {
        for (long i = 0; i < per; ++i) {
          std::lock_guard<Mutex> lk(m);
          ++counter;
        }
      });
    }
    g.wait();
  });
  const double s = seconds_since(start);
  if (counter != 100 * per) std::fprintf(stderr, "mutex: lost increments\n");
  std::printf("mutex %s %.1f\n", kind, s * 1e9 / double(100 * per));
}

void select_bench(weft::executor& ex, long n) {
  weft::channel<long> in[4] = {weft::channel<long>(0), weft::channel<long>(0),
                               weft::channel<long>(0), weft::channel<long>(0)};
  const long per = n / 4;
  long got = 0;
  const auto start = clock_type::now();
  ex.run([&] {
    weft::task_group producers;
    for (auto& c : in) {
      producers.spawn([&c, per] {
        for (long i = 0; i < per; ++i)
          c.send(i);
      });
    }
    std::optional<long> v;
    for (long i = 0; i < 4 * per; ++i) {
      weft::select(weft::recv_case(in[0], v), weft::recv_case(in[1], v), weft::recv_case(in[2], v),
                   weft::recv_case(in[3], v));
      got += v.has_value();
    }
    producers.wait();
  });
  const double s = seconds_since(start);
  print_stats(ex);
  if (got != 4 * per) std::fprintf(stderr, "select: lost values\n");
  std::printf("select weft %.0f\n", s * 1e9 / double(4 * per));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_channels pingpong|mpmc|pool|mutex|select weft|boost [n]\n");
    return 2;
  }
  const std::string mode = argv[1];
  const bool weft_kind = std::strcmp(argv[2], "weft") == 0;
  const char* kind = weft_kind ? "weft" : "boost";
  const char* threads = std::getenv("WEFT_BENCH_THREADS");  // default 2, as GOMAXPROCS=2
  weft::executor ex(threads != nullptr ? static_cast<unsigned>(std::atoi(threads)) : 2u);
  if (mode == "pingpong") {
    const long n = argc > 3 ? std::atol(argv[3]) : 200000;
    weft_kind ? pingpong<weft_chan>(ex, n, kind) : pingpong<boost_chan>(ex, n, kind);
  } else if (mode == "mpmc") {
    const long n = argc > 3 ? std::atol(argv[3]) : 2000000;
    weft_kind ? mpmc<weft_chan>(ex, n, kind) : mpmc<boost_chan>(ex, n, kind);
  } else if (mode == "pool") {
    const long n = argc > 3 ? std::atol(argv[3]) : 200000;
    weft_kind ? pool<weft_chan>(ex, n, kind) : pool<boost_chan>(ex, n, kind);
  } else if (mode == "mutex") {
    const long n = argc > 3 ? std::atol(argv[3]) : 2000000;
    weft_kind ? mutex_bench<weft::mutex>(ex, n, kind)
              : mutex_bench<boost::fibers::mutex>(ex, n, kind);
  } else if (mode == "select" && weft_kind) {
    select_bench(ex, argc > 3 ? std::atol(argv[3]) : 400000);
  } else {
    std::fprintf(stderr, "bench_channels: no %s %s\n", argv[1], argv[2]);
    return 2;
  }
  return 0;
}
