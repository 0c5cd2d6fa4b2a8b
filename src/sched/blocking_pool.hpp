// blocking_pool.hpp: the threads that run offload()ed calls for one executor.
//
// Threads start on demand, up to a cap; a thread idle for a while exits, so a burst of
// blocking calls does not leave its threads behind. Calls wait in a FIFO queue when every
// thread is busy; a caller that is cancelled meanwhile takes its call back (withdraw()).
// Nothing a blocking thread does allocates: running out of memory can fail a submit(), never
// a call already accepted (a thread that ends moves its own list node to exited_).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <list>
#include <mutex>
#include <string>
#include <thread>

#include <weft/offload.hpp>

namespace weft::detail {

class blocking_pool {
 public:
  blocking_pool(unsigned max_threads, std::string name);
  ~blocking_pool();
  blocking_pool(const blocking_pool&) = delete;
  blocking_pool& operator=(const blocking_pool&) = delete;

  // submit() queues call, starting a thread if none is free and the cap allows. Throws
  // (std::system_error, std::bad_alloc) only when no thread exists and none can be started;
  // the call is then not queued.
  void submit(offload_base* call);
  // withdraw() takes call out of the queue; false if a thread already took it.
  bool withdraw(offload_base* call) noexcept;
  // stop() ends and joins every thread; calls still queued then are a bug of the caller.
  void stop() noexcept;

  unsigned threads() const noexcept;  // threads alive now
  unsigned busy() const noexcept;     // threads running a call now

  // A thread with nothing to do for this long exits.
  static constexpr std::chrono::seconds idle_exit{10};
  // A thread that ran out of work looks for more this long before it sleeps.
  static constexpr std::chrono::microseconds spin_before_sleep{50};

 private:
  void thread_main(std::list<std::thread>::iterator self);
  void join_exited() noexcept;

  const unsigned max_threads_;
  const std::string name_;
  mutable std::mutex mutex_;
  std::condition_variable work_;
  offload_base* head_ = nullptr;  // the queue, oldest first
  offload_base* tail_ = nullptr;
  std::size_t queued_ = 0;
  std::atomic<std::size_t> queued_hint_{0};  // queued_, for the spinning threads
  unsigned threads_ = 0;                     // alive, including those about to exit
  unsigned idle_ = 0;                        // waiting for work
  bool stopping_ = false;
  std::list<std::thread> running_;  // one per live thread
  std::list<std::thread> exited_;   // threads that left on their own, to be joined
};

}  // namespace weft::detail
