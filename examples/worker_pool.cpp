// worker_pool: the main demo -- a pool of worker fibers serving a stream of jobs from a bounded
// queue, each job with its own context and deadline.
//
// A producer fiber puts jobs into a weft::channel of capacity --queue: when the workers fall
// behind it waits (backpressure), but never past the job's deadline -- a job that cannot even
// be queued in time counts as out of time, not as lost. --workers fibers take jobs from the
// channel; each binds the job's id and tenant in context variables and runs it under the
// job's deadline (counted from when the job was made, so time spent queued counts). A job
// fans out into sub-tasks with a task_group, and code deep inside reads the job's values with
// .get() and checks its deadline, on whatever worker thread it runs. A progress line with the
// pool's live counters (executor::stats()) goes to stderr; at the end a summary shows
// throughput, work per worker thread, the jobs that ran out of time, and that no sub-task ever
// saw another job's context. Shutdown loses nothing: the producer closes the queue, the workers
// drain it, and every job either completes or runs out of time. While it runs,
// `kill -USR1 <pid>` prints every fiber with what it waits on ("channel jobs: recv") and its job
// id and tenant (weft::dump_on_signal); --dump-after-ms N prints one dump by itself.
//
// Run: ./scripts/demo   or   ./build/examples/worker_pool --threads 4 --jobs 5000 --fanout 8
//      ./build/examples/worker_pool --deadline-ms 50     (workers that far behind: many late)
#include <unistd.h>

#include <csignal>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <weft/weft.hpp>

#include "cli.hpp"

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

weft::context_var<long> job_id("job_id");
weft::context_var<std::string> tenant("tenant");

struct options {
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  long jobs = 20000;
  int fanout = 8;
  long deadline_ms = 10000;
  long queue = 64;         // capacity of the job channel
  long workers = 64;       // worker fibers taking jobs from it
  long dump_after_ms = 0;  // 0: no dump of its own
};

// job is what travels through the queue: the context and the deadline are bound by the worker
// that takes it.
struct job {
  long id = 0;
  const char* tenant = "";
  clock_type::time_point deadline;
};

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: worker_pool [--threads N] [--jobs N] [--fanout N] [--deadline-ms N]\n"
               "                   [--queue N] [--workers N] [--dump-after-ms N]\n"
               "  --threads N      worker threads (default: the number of cores)\n"
               "  --jobs N         jobs to submit (default 20000)\n"
               "  --fanout N       sub-tasks per job, run in a task_group (default 8)\n"
               "  --deadline-ms N  each job's deadline, counted from its submission: queueing\n"
               "                   and waiting in the queue count (default 10000)\n"
               "  --queue N        capacity of the job queue, a weft::channel (default 64)\n"
               "  --workers N      worker fibers taking jobs from the queue (default 64)\n"
               "  --dump-after-ms N  print every fiber (executor::dump()) to stdout N ms\n"
               "                   into the run\n"
               "\n"
               "While it runs, SIGUSR1 (kill -USR1 <pid>) dumps every fiber to stderr.\n");
}

// parse_count() reads a positive whole-number flag value or exits with status 2.
long parse_count(const char* flag, const char* text, long max) {
  return example::parse_number("worker_pool", flag, text, 1, max);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--threads") {
      o.threads = unsigned(parse_count("--threads", value, 1024));
      ++i;
    } else if (a == "--jobs") {
      o.jobs = parse_count("--jobs", value, 100000000);
      ++i;
    } else if (a == "--fanout") {
      o.fanout = int(parse_count("--fanout", value, 10000));
      ++i;
    } else if (a == "--deadline-ms") {
      o.deadline_ms = parse_count("--deadline-ms", value, 86400000);
      ++i;
    } else if (a == "--queue") {
      o.queue = parse_count("--queue", value, 100000000);
      ++i;
    } else if (a == "--workers") {
      o.workers = parse_count("--workers", value, 1000000);
      ++i;
    } else if (a == "--dump-after-ms") {
      o.dump_after_ms = parse_count("--dump-after-ms", value, 86400000);
      ++i;
    } else {
      std::fprintf(stderr, "worker_pool: unknown option '%s'\n", a.c_str());
      usage(stderr);
      std::exit(2);
    }
  }
  return o;
}

// Statistics, per worker thread (a thread_local is right here: it is about threads).
std::mutex stats_mutex;
std::map<std::thread::id, long> subtasks_per_thread;
std::atomic<long> jobs_done{0}, jobs_out_of_time{0}, subtasks_done{0}, mismatches{0};

void count_subtask() {
  thread_local long* mine = [] {
    std::lock_guard<std::mutex> g(stats_mutex);
    return &subtasks_per_thread[std::this_thread::get_id()];
  }();
  ++*mine;  // only this thread writes it; read after join()
}

// lookup_price() stands for code deep in a call chain: it needs the tenant and must not
// work past the job's deadline, but was never given either.
long lookup_price(long item) {
  weft::this_fiber::throw_if_cancelled();  // deadline_exceeded once the job is out of time
  long h = item * 2654435761L + long(tenant.get().size());
  for (int i = 0; i < 2000; ++i)
    h = h * 6364136223846793005L + 1442695040888963407L;
  return h & 0xff;
}

void subtask(long expected_job, long item) {
  // An I/O wait: the worker runs other fibers meanwhile; it ends early at the deadline.
  weft::this_fiber::sleep_for(200us);
  (void)lookup_price(item);
  if (job_id.get() != expected_job) ++mismatches;
  count_subtask();
  ++subtasks_done;
}

void run_job(int fanout) {
  const long id = job_id.get();
  weft::task_group parts;
  for (int k = 0; k < fanout; ++k)
    parts.spawn(subtask, id, id * fanout + k);
  parts.wait();
}

// worker() takes jobs until the queue is closed and drained. Each job runs in the job's own
// context, under its deadline: the worker fiber itself is reused, its context is not.
void worker(weft::channel<job>& queue, int fanout) {
  while (std::optional<job> j = queue.recv()) {
    auto id = job_id.scoped(j->id);
    auto who = tenant.scoped(j->tenant);
    try {
      weft::with_deadline(j->deadline, run_job, fanout);
      ++jobs_done;
    } catch (const weft::error& e) {
      if (e.code() != weft::errc::deadline_exceeded) throw;
      ++jobs_out_of_time;  // the group's other sub-tasks stopped at the deadline too
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const bool tty = isatty(STDERR_FILENO);
  std::printf("worker_pool: %u threads, %ld jobs, fan-out %d, deadline %ld ms\n", o.threads, o.jobs,
              o.fanout, o.deadline_ms);

  weft::executor pool(o.threads);
  // kill -USR1 <pid>: every fiber, each with its job id and tenant, on stderr.
  weft::dump_on_signal dumper(pool, SIGUSR1);
  std::fprintf(stderr, "worker_pool: pid %d; kill -USR1 %d dumps every fiber\n", int(getpid()),
               int(getpid()));
  const auto start = clock_type::now();
  std::atomic<bool> finished{false};
  // A live line: progress, and the pool's own counters (executor::stats() is cheap and may
  // be called from any thread while the pool runs at full speed).
  std::thread progress([&] {
    long last = 0;
    auto last_t = start;
    while (!finished) {
      const auto next = clock_type::now() + (tty ? 200ms : 1s);
      while (!finished && clock_type::now() < next)
        std::this_thread::sleep_for(10ms);
      if (finished) break;
      const long now_done = jobs_done + jobs_out_of_time;
      const auto t = clock_type::now();
      const double rate =
          double(now_done - last) / std::chrono::duration<double>(t - last_t).count();
      const weft::executor_stats st = pool.stats();
      std::fprintf(stderr,
                   "%sjobs %ld/%ld done, %.0f jobs/s | fibers: %zu live, %zu ready, %llu spawned, "
                   "%llu steals%s",
                   tty ? "\r" : "", now_done, o.jobs, rate, st.live_fibers, st.ready_fibers,
                   static_cast<unsigned long long>(st.spawned),
                   static_cast<unsigned long long>(st.steals), tty ? "   " : "\n");
      last = now_done;
      last_t = t;
    }
  });

  // One dump of its own, for people trying it out (the signal does the same at any time).
  std::thread dump_once([&] {
    if (o.dump_after_ms == 0) return;
    const auto at = start + std::chrono::milliseconds(o.dump_after_ms);
    while (!finished && clock_type::now() < at)
      std::this_thread::sleep_for(1ms);
    if (finished) return;
    std::ostringstream text;
    pool.dump(text);
    std::fputs(text.str().c_str(), stdout);
    std::fflush(stdout);
  });

  static const char* const tenants[] = {"acme", "globex", "initech", "umbrella"};
  weft::channel<job> queue(static_cast<std::size_t>(o.queue), "jobs");
  for (long w = 0; w < o.workers; ++w)
    pool.post(worker, std::ref(queue), o.fanout);
  // The producer: a fiber that makes the jobs and queues them, waiting while the queue is full
  // -- but never past a job's own deadline.
  pool.post([&] {
    for (long j = 0; j < o.jobs; ++j) {
      const job next{j, tenants[j % 4],
                     clock_type::now() + std::chrono::milliseconds(o.deadline_ms)};
      try {
        weft::with_deadline(next.deadline, [&] { queue.send(next); });
      } catch (const weft::error& e) {
        if (e.code() != weft::errc::deadline_exceeded) throw;
        ++jobs_out_of_time;  // could not even be queued in time
      }
    }
    queue.close();  // the workers drain what is queued, then end
  });
  pool.shutdown();  // no more submissions; everything accepted still runs
  pool.join();
  const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
  finished = true;
  progress.join();
  dump_once.join();
  if (tty) std::fprintf(stderr, "\n");

  std::printf("done: %ld jobs, %ld sub-tasks in %.2f s: %.0f jobs/s, %.0f sub-tasks/s\n",
              jobs_done.load(), subtasks_done.load(), secs, double(jobs_done) / secs,
              double(subtasks_done) / secs);
  int worker = 0;
  for (const auto& [thread, n] : subtasks_per_thread) {
    std::printf("  worker %d ran %ld sub-tasks\n", worker++, n);
  }
  const weft::executor_stats st = pool.stats();
  std::printf("  fibers: %llu spawned, %llu steals, %zu stacks mapped\n",
              static_cast<unsigned long long>(st.spawned),
              static_cast<unsigned long long>(st.steals), st.stacks);
  std::printf("jobs out of time (deadline %ld ms): %ld, context mismatches: %ld\n", o.deadline_ms,
              jobs_out_of_time.load(), mismatches.load());
  const bool ok = jobs_done + jobs_out_of_time == o.jobs && mismatches == 0;
  if (!ok) std::printf("FAILED: lost jobs or wrong contexts\n");
  return ok ? 0 : 1;
}
