// stack_pool.hpp: fiber stacks, reused across fibers of one executor.
//
// A fiber may finish on another worker than the one it started on, so the free list is
// shared and locked (Boost's pooled_fixedsize_stack is not thread-safe). Stacks are carved
// from mmap'ed slabs of growing size and kept until the executor goes: mapping and unmapping
// one stack per fiber costs a system call and, in a multi-threaded process, a TLB shootdown
// on every core. The most recently used idle stacks (up to 64 MiB) stay hot for reuse; the
// older ones give their pages back to the kernel (MADV_DONTNEED) once the pool goes idle, so
// a burst of fibers does not pin its memory for the executor's lifetime. With guard pages
// the lowest page of each stack is PROT_NONE, so an overflow faults instead of silently
// corrupting the neighbour -- as long as its first touch below the stack lands in the guard
// region (see executor_options::guard_size).
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <new>
#include <vector>

#include <boost/context/stack_context.hpp>

#include <weft/detail/spinlock.hpp>

namespace weft::detail {

// stack_limit_for_testing is how many stacks one stack_pool may map before carving fails as if
// the kernel refused the mapping (vm.max_map_count, address space). Tests lower it to
// exercise exhaustion without exhausting the machine; unlimited otherwise.
extern std::atomic<std::size_t> stack_limit_for_testing;

class stack_pool;
// g_stack_pools heads the list of every live stack_pool, linked through stack_pool::debug_next_
// by the constructor and unlinked by the destructor, under a mutex of their own: a debugger
// finds every fiber of the process from it, in a live process or in a core file (the gdb
// extension, share/weft/gdb/weft.py, and docs/debugging.md). Nothing in weft reads it, and no
// fiber or worker touches it: only executors being made and destroyed do.
extern stack_pool* g_stack_pools;

// stack_exhausted is the bad_alloc of a stack that could not be mapped: its message names the
// likely cause and the knob, with no allocation of its own.
class stack_exhausted final : public std::bad_alloc {
 public:
  stack_exhausted(bool guarded, std::size_t carved, bool held_elsewhere) noexcept;
  const char* what() const noexcept override { return message_; }
  // held_elsewhere() is true when other stacks of the pool were in use: one comes back when its
  // fiber ends (see stack_pool::starved()), so work that can wait for it should.
  bool held_elsewhere() const noexcept { return held_elsewhere_; }

 private:
  bool held_elsewhere_;
  char message_[256];
};

class stack_pool {
 public:
  // stack_pool(stack_size, guard_size): guard_size bytes below each stack are PROT_NONE
  // (0: no guard). The caller checked both sizes.
  stack_pool(std::size_t stack_size, std::size_t guard_size);
  stack_pool(const stack_pool&) = delete;
  stack_pool& operator=(const stack_pool&) = delete;
  ~stack_pool();

  // allocate() throws stack_exhausted when no stack is free and none can be mapped (and
  // std::bad_alloc when the pool's own bookkeeping cannot grow).
  boost::context::stack_context allocate();
  void deallocate(boost::context::stack_context& sctx) noexcept;

  // starved() is true from a stack_exhausted with stacks held elsewhere until a stack is free
  // again for whoever asks first: one given back by a fiber that ends (it then skips its
  // worker's cache), or the cached ones of a worker about to sleep (trim()). Work waiting
  // for a stack is retried once it turns false. Any thread.
  bool starved() const noexcept { return starved_.load(std::memory_order_acquire); }

  // cache is one worker's own handful of stacks: most fibers start and end on the worker
  // they were spawned on, and these stacks change hands without the shared lock.
  struct alignas(64) cache {
    const stack_pool* owner = nullptr;
    unsigned count = 0;
    void* stacks[32];
  };
  // attach() makes `c` the calling thread's cache for this pool (a worker, when it starts);
  // detach() gives its stacks back to the pool and stops using it (when the worker ends).
  void attach(cache& c) noexcept;
  void detach(cache& c) noexcept;

  // trim() gives back the pages of up to `batch` idle stacks beyond the hot ones, oldest
  // first, and says whether more remain. While the pool is starved() it first hands the
  // calling worker's cached stacks to the shared list, where the waiting work finds them. Workers
  // call it when they are about to sleep, a batch at a time, looking for work in between: the
  // system calls then cost nothing the fibers would notice.
  bool trim(std::size_t batch) noexcept;

  // for_each_top() calls f(top) with the top of every stack mapped so far, used or not. The
  // memory stays mapped until the pool is destroyed, so f may read it while fibers run.
  template <class F>
  void for_each_top(F f) const {
    std::vector<slab> carved;
    {
      std::lock_guard<spinlock> g(lock_);
      carved = slabs_;
      if (!carved.empty()) {
        carved.back().bytes =
            static_cast<std::size_t>(next_ - static_cast<char*>(carved.back().base));
      }
    }
    for (const slab& s : carved) {
      for (std::size_t at = stride_; at <= s.bytes; at += stride_) {
        f(static_cast<char*>(s.base) + at);
      }
    }
  }

  // mapped_bytes() is the address space of those stacks, guard regions included.
  std::size_t mapped_bytes() const noexcept {
    std::lock_guard<spinlock> g(lock_);
    return carved_ * stride_;
  }

  // allocated() is the number of stacks mapped so far (in use, or pooled for reuse).
  std::size_t allocated() const noexcept {
    std::lock_guard<spinlock> g(lock_);
    return carved_;
  }

 private:
  struct slab {
    void* base;
    std::size_t bytes;
  };
  void* carve();  // a stack never used before; called with lock_ held
  boost::context::stack_context context_of(void* base) const noexcept;
  void give_back(void* base) noexcept;  // to the shared list

  std::size_t usable_;  // bytes a fiber can use
  std::size_t guard_bytes_;
  std::size_t stride_;  // bytes per stack, guard page included
  bool guard_;
  std::size_t hot_limit_;  // idle stacks kept with their pages
  mutable spinlock lock_;
  std::vector<void*> free_;  // bases of returned stacks, oldest first, pages resident
  std::vector<void*> cold_;  // bases of idle stacks whose pages were given back
  std::vector<slab> slabs_;
  char* next_ = nullptr;  // uncarved part of the newest slab
  char* end_ = nullptr;
  std::size_t in_use_ = 0;
  std::size_t carved_ = 0;
  std::atomic<bool> starved_{false};  // set and cleared with lock_ held
  stack_pool* debug_next_ = nullptr;  // the next in g_stack_pools
};

// prepared_stack is the StackAllocator Boost.Fiber copies into each fiber: it hands over a
// stack taken from the pool already, minus the `reserved` bytes at its top that hold the
// fiber's record, and gives the whole stack back when the fiber is destroyed.
struct prepared_stack {
  stack_pool* pool;
  boost::context::stack_context stack;
  std::size_t reserved;
  boost::context::stack_context allocate() noexcept { return stack; }
  void deallocate(boost::context::stack_context& sctx) noexcept {
    sctx.sp = static_cast<char*>(sctx.sp) + reserved;
    sctx.size += reserved;
    pool->deallocate(sctx);
  }
};

}  // namespace weft::detail
