// io: Google Benchmark figures of weft/asio.hpp next to raw Asio, in one binary.
#include <benchmark/benchmark.h>

#include <chrono>
#include <thread>

#include <boost/asio.hpp>

#include <weft/asio.hpp>
#include <weft/weft.hpp>

namespace {

// One wait on an already expired timer through weft::use_fiber, from a pool fiber: the fiber
// parks, its worker (out of fibers) polls the io_context, whose handler wakes the fiber there.
void use_fiber_timer_wait(benchmark::State& state) {
  weft::executor ex(1);
  ex.run([&] {
    boost::asio::steady_timer t(weft::io_context(ex));
    for (auto _ : state) {
      t.expires_at(std::chrono::steady_clock::time_point::min());
      t.async_wait(weft::use_fiber);
    }
  });
}
BENCHMARK(use_fiber_timer_wait)->UseRealTime();

// The same wait with a raw Asio callback that arms the next wait, all on the io_context's
// own thread: the floor a completion token can approach.
void asio_callback_timer_wait(benchmark::State& state) {
  boost::asio::io_context io(1);
  boost::asio::steady_timer t(io);
  std::function<void(boost::system::error_code)> next = [&](boost::system::error_code) {
    if (!state.KeepRunning()) return;
    t.expires_at(std::chrono::steady_clock::time_point::min());
    t.async_wait(next);
  };
  next({});
  io.run();
}
BENCHMARK(asio_callback_timer_wait)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
