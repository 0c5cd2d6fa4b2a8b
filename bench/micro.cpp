// micro: Google Benchmark micro-benchmarks of weft next to the baselines it replaces, all in
// one binary so that ratios come from the same run.
#include <benchmark/benchmark.h>

#include <boost/fiber/all.hpp>

#include <memory>
#include <string>
#include <vector>

#include <weft/weft.hpp>

namespace {

thread_local int tl_int = 1;  // the baseline: what a thread_local read costs

// Variables are created once, in slot order, as a program defines them at namespace scope:
// bound_context(n) binds the first n, so the trie depth is that of n variables.
std::vector<std::unique_ptr<weft::context_var<int>>>& all_vars() {
  static std::vector<std::unique_ptr<weft::context_var<int>>> vars = [] {
    std::vector<std::unique_ptr<weft::context_var<int>>> v;
    for (int i = 0; i < 10000; ++i)
      v.push_back(std::make_unique<weft::context_var<int>>("v"));
    return v;
  }();
  return vars;
}

// A context with n variables bound; last() is the one with the highest slot.
struct bound_context {
  int n;
  weft::context ctx;
  explicit bound_context(int count) : n(count) {
    ctx.run([&] {
      for (int i = 0; i < n; ++i)
        (void)all_vars()[i]->set(1);
    });
  }
  weft::context_var<int>& last() { return *all_vars()[std::size_t(n > 0 ? n - 1 : 0)]; }
};

void thread_local_read(benchmark::State& state) {
  for (auto _ : state) {
    int x = tl_int;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(thread_local_read);

void fiber_specific_ptr_read(benchmark::State& state) {
  static boost::fibers::fiber_specific_ptr<int> fsp;
  fsp.reset(new int(1));
  for (auto _ : state) {
    int x = *fsp.get();
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(fiber_specific_ptr_read);

void context_var_get(benchmark::State& state) {
  bound_context b(int(state.range(0)));
  weft::context_var<int>& var = b.last();
  b.ctx.run([&] {
    for (auto _ : state) {
      int x = var.get();
      benchmark::DoNotOptimize(x);
    }
  });
}
BENCHMARK(context_var_get)->Arg(1)->Arg(16)->Arg(32)->Arg(1000)->Arg(10000);

void context_var_get_default(benchmark::State& state) {
  weft::context_var<int> v("unbound", 3);
  for (auto _ : state) {
    int x = v.get();
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(context_var_get_default);

// On a pool fiber the current context is found through the record the scheduler installs.
void context_var_get_on_fiber(benchmark::State& state) {
  bound_context b(16);
  weft::executor ex(1);
  weft::context_var<int>& var = b.last();
  b.ctx.run([&] {
    ex.run([&] {
      for (auto _ : state) {
        int x = var.get();
        benchmark::DoNotOptimize(x);
      }
    });
  });
}
BENCHMARK(context_var_get_on_fiber)->UseRealTime();

void fiber_specific_ptr_read_on_fiber(benchmark::State& state) {
  static boost::fibers::fiber_specific_ptr<int> fsp;
  weft::executor ex(1);
  ex.run([&] {
    fsp.reset(new int(1));
    for (auto _ : state) {
      int x = *fsp.get();
      benchmark::DoNotOptimize(x);
    }
    fsp.reset(nullptr);
  });
}
BENCHMARK(fiber_specific_ptr_read_on_fiber)->UseRealTime();

void fiber_local_read_on_fiber(benchmark::State& state) {
  static weft::fiber_local<int> local;
  weft::executor ex(1);
  ex.run([&] {
    local.get() = 1;
    for (auto _ : state) {
      int x = local.get();
      benchmark::DoNotOptimize(x);
    }
  });
}
BENCHMARK(fiber_local_read_on_fiber)->UseRealTime();

// with_timeout(1s, f) around an empty f that does not expire, on a pool fiber. Arg 0: the
// fiber is under no cancellation; arg 1: it is a task_group child (its scope has a parent,
// so the deadline's scope is linked below it).
void with_timeout_on_fiber(benchmark::State& state) {
  weft::executor ex(1);
  ex.run([&] {
    auto loop = [&] {
      int calls = 0;
      for (auto _ : state) {
        weft::with_timeout(std::chrono::seconds(1), [&calls] { ++calls; });
      }
      benchmark::DoNotOptimize(calls);
    };
    if (state.range(0) == 0) {
      loop();
    } else {
      weft::task_group g;
      g.spawn(loop);
    }
  });
}
BENCHMARK(with_timeout_on_fiber)->Arg(0)->Arg(1)->UseRealTime();

// this_fiber::cancellation_requested() under a deadline: the check every cancellation point
// makes (a clock read), next to the same check with no deadline in force.
void cancellation_check_on_fiber(benchmark::State& state) {
  weft::executor ex(1);
  ex.run([&] {
    auto loop = [&] {
      for (auto _ : state) {
        bool c = weft::this_fiber::cancellation_requested();
        benchmark::DoNotOptimize(c);
      }
    };
    if (state.range(0) == 0) {
      loop();
    } else {
      weft::with_timeout(std::chrono::hours(1), loop);
    }
  });
}
BENCHMARK(cancellation_check_on_fiber)->Arg(0)->Arg(1)->UseRealTime();

// offload() of an empty function from a pool fiber and back: the hand-off to a blocking
// thread and the wake-up of the waiting fiber.
void offload_round_trip(benchmark::State& state) {
  weft::executor ex(1);
  ex.run([&] {
    for (auto _ : state) {
      weft::offload([] {});
    }
  });
}
BENCHMARK(offload_round_trip)->UseRealTime();

// set() in a context holding n bound variables; the token is dropped at once.
void context_var_set(benchmark::State& state) {
  bound_context b(int(state.range(0)));
  weft::context_var<int>& var = b.last();
  b.ctx.run([&] {
    int i = 0;
    for (auto _ : state)
      (void)var.set(++i);
  });
}
BENCHMARK(context_var_set)->Arg(1)->Arg(16)->Arg(1000);

// set() then reset() in a context holding n bound variables: one binding changes and comes
// back, as a scoped binding does.
void context_var_set_reset(benchmark::State& state) {
  bound_context b(int(state.range(0)));
  weft::context_var<int>& var = b.last();
  b.ctx.run([&] {
    int i = 0;
    for (auto _ : state) {
      auto t = var.set(++i);
      var.reset(t);
    }
  });
}
BENCHMARK(context_var_set_reset)->Arg(1)->Arg(16)->Arg(1000);

// set() in a context whose snapshot is shared with a copy (as right after a spawn): the path
// is copied, not edited in place.
void context_var_set_shared(benchmark::State& state) {
  bound_context b(int(state.range(0)));
  weft::context_var<int>& var = b.last();
  b.ctx.run([&] {
    int i = 0;
    for (auto _ : state) {
      const weft::context keep = weft::copy_context();
      auto t = var.set(++i);
      benchmark::DoNotOptimize(t);
    }
  });
}
BENCHMARK(context_var_set_shared)->Arg(1)->Arg(16)->Arg(1000);

// The same with std::string values: they live in cells (not in place), so the first set after
// a copy takes a reference to each of the n cells the new node shares with the old one.
void context_var_set_shared_cells(benchmark::State& state) {
  static std::vector<std::unique_ptr<weft::context_var<std::string>>> vars = [] {
    std::vector<std::unique_ptr<weft::context_var<std::string>>> v;
    for (int i = 0; i < 32; ++i)
      v.push_back(std::make_unique<weft::context_var<std::string>>("s"));
    return v;
  }();
  const auto n = std::size_t(state.range(0));
  weft::context ctx;
  ctx.run([&] {
    for (std::size_t i = 0; i < n; ++i)
      (void)vars[i]->set("request-0123456789abcdef");  // not a short string: a heap copy
    const std::string value = "tenant-0123456789abcdef";
    for (auto _ : state) {
      const weft::context keep = weft::copy_context();
      auto t = vars[n - 1]->set(value);
      benchmark::DoNotOptimize(t);
    }
  });
}
BENCHMARK(context_var_set_shared_cells)->Arg(1)->Arg(16);

void copy_context(benchmark::State& state) {
  bound_context b(int(state.range(0)));
  b.ctx.run([&] {
    for (auto _ : state) {
      weft::context c = weft::copy_context();
      benchmark::DoNotOptimize(c);
    }
  });
}
BENCHMARK(copy_context)->Arg(1)->Arg(1000);

// Spawn + get of an empty fiber from a fiber, on a 1-worker executor, with n variables bound
// in the spawner's context.
void weft_spawn_get(benchmark::State& state) {
  bound_context b(int(state.range(0)));
  weft::executor ex(1);
  b.ctx.run([&] {
    ex.run([&] {
      for (auto _ : state)
        weft::spawn([] {}).get();
    });
  });
}
BENCHMARK(weft_spawn_get)->Arg(0)->Arg(16)->Arg(1000)->UseRealTime();

// executor::run() of an empty task from a plain thread: submission through the pool's queue,
// a worker starts the fiber, the thread waits for the result.
void weft_run_from_thread(benchmark::State& state) {
  weft::executor ex(unsigned(state.range(0)));
  for (auto _ : state)
    benchmark::DoNotOptimize(ex.run([] { return 1; }));
}
BENCHMARK(weft_run_from_thread)->Arg(1)->Arg(2)->UseRealTime();

// The baseline: raw Boost.Fiber spawn (launch::post) + join on the default round_robin
// scheduler, on a plain thread, default 128 KiB fixedsize stack as weft's default.
// executor::fibers() with n fibers parked, each with two variables bound: the whole listing,
// values printed (a debugging tool: what one look at a busy service costs).
weft::context_var<long> listed_job("job");
weft::context_var<std::string> listed_tenant("tenant");
void executor_fibers(benchmark::State& state) {
  weft::executor ex(2);
  std::atomic<bool> release{false};
  const long n = state.range(0);
  ex.run([&] {
    for (long i = 0; i < n; ++i) {
      auto j = listed_job.scoped(i);
      auto t = listed_tenant.scoped("tenant-" + std::to_string(i % 16));
      weft::spawn([&release] {
        while (!release.load(std::memory_order_relaxed))
          weft::this_fiber::sleep_for(std::chrono::milliseconds(50));
      });
    }
  });
  std::size_t seen = 0;
  for (auto _ : state) {
    seen = ex.fibers().size();
    benchmark::DoNotOptimize(seen);
  }
  state.counters["fibers"] = double(seen);
  release = true;
}
BENCHMARK(executor_fibers)->Arg(1000)->Arg(10000)->UseRealTime();

void boost_spawn_join(benchmark::State& state) {
  for (auto _ : state) {
    boost::fibers::fiber f(boost::fibers::launch::post, [] {});
    f.join();
  }
}
BENCHMARK(boost_spawn_join);

}  // namespace

BENCHMARK_MAIN();
