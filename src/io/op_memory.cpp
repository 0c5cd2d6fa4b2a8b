// op_memory.cpp: the memory of use_fiber operations -- their io_wait states and what Asio
// allocates through the handler's allocator (the operations themselves, Beast's stable
// state) -- recycled per thread.
//
// Asio's own recycling keeps two blocks per thread in the thread_info of the run or poll on
// top of its call stack. That suits a thread inside run(), where a coroutine resumed by a
// completion starts its next operation in the same handler: every free is followed by an
// allocation. weft's workers batch instead: a poll completes dozens of operations (frees),
// then their fibers run and start the next ones (allocations). Two blocks then helped at the
// batch's edges only, and poll_one() frees its thread_info's blocks when it returns: HTTP /hello
// on Beast still made 12 allocations per request against the coroutines' 8. A few dozen blocks
// per size class, kept for the thread's life, cover a batch (9.4 per request). What remained
// were blocks moving one way between threads -- allocated by the workers that run the fibers,
// freed by the one that polls -- so a thread's full cache hands a batch to a shared one, which
// a thread with an empty cache draws from (as tcmalloc's transfer cache does): 8 per request.
#include <weft/asio.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <new>

#include <weft/detail/spinlock.hpp>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

namespace weft::detail {

namespace {

constexpr std::size_t kSmallest = 64;
constexpr std::size_t kClasses = 5;  // 64 .. 1024 bytes
constexpr std::size_t kLargest = kSmallest << (kClasses - 1);
constexpr std::size_t kKeep = 32;     // per class and thread: at most 62 KiB per thread
constexpr std::size_t kBatch = 16;    // moved to or from the shared cache at a time
constexpr std::size_t kShared = 256;  // per class in the shared cache: at most 496 KiB
static_assert(kBatch <= kKeep && kBatch <= kShared);

// shared_cache holds the blocks threads had no room for, for threads that have none.
class shared_cache {
 public:
  // put() takes up to n of the blocks of class k at `from`, the last first; returns how many
  // it took.
  std::size_t put(std::size_t k, void* const* from, std::size_t n) noexcept {
    std::lock_guard<spinlock> g(lock_);
    const std::size_t had = count_[k].load(std::memory_order_relaxed);
    const std::size_t moved = std::min(n, kShared - had);
    for (std::size_t i = 0; i < moved; ++i)
      blocks_[k][had + i] = from[n - 1 - i];
    count_[k].store(had + moved, std::memory_order_relaxed);
    return moved;
  }
  // get() gives up to n blocks of class k into `to`; returns how many it gave.
  std::size_t get(std::size_t k, void** to, std::size_t n) noexcept {
    // A look without the lock first: a thread whose blocks all come back elsewhere misses here
    // on every allocation, which a malloc serves anyway.
    if (count_[k].load(std::memory_order_relaxed) == 0) return 0;
    std::lock_guard<spinlock> g(lock_);
    const std::size_t had = count_[k].load(std::memory_order_relaxed);
    const std::size_t moved = std::min(n, had);
    for (std::size_t i = 0; i < moved; ++i)
      to[i] = blocks_[k][had - 1 - i];
    count_[k].store(had - moved, std::memory_order_relaxed);
    return moved;
  }

 private:
  spinlock lock_;
  void* blocks_[kClasses][kShared] = {};
  std::atomic<std::size_t> count_[kClasses] = {};
};

// Constant-initialized and trivially destroyed: usable from any thread at any time, also
// during static destruction, and its first use allocates nothing (a deallocation must not
// fail).
constinit shared_cache shared_blocks;

// block_cache keeps blocks of kSmallest << k bytes (k < kClasses) freed on this thread for
// the next allocations of their class. A block goes to the cache of the thread that frees it;
// a full cache passes a batch on to the shared one, an empty one draws a batch from it.
class block_cache {
 public:
  // size_class() is the class of a block of `bytes`.
  static std::size_t size_class(std::size_t bytes) noexcept {
    std::size_t k = 0;
    while ((kSmallest << k) < bytes)
      ++k;
    return k;
  }

  block_cache() = default;
  block_cache(const block_cache&) = delete;
  block_cache& operator=(const block_cache&) = delete;
  // A block freed later in the thread's exit (by another thread_local's destructor) goes back
  // to the heap.
  ~block_cache() {
    closed_ = true;
    for (std::size_t k = 0; k < kClasses; ++k) {
      while (void* p = take(k))
        ::operator delete(p, kSmallest << k);
    }
  }

  // A kept block is poisoned for ASan until it is handed out again: a late touch of freed
  // operation state is still reported, as it was when the block went back to the heap.
  void* take(std::size_t k) noexcept {
    if (count_[k] == 0) {
      if (closed_) return nullptr;
      count_[k] = shared_blocks.get(k, blocks_[k], kBatch);
      if (count_[k] == 0) return nullptr;
    }
    void* p = blocks_[k][--count_[k]];
    ASAN_UNPOISON_MEMORY_REGION(p, kSmallest << k);
    return p;
  }
  bool give(void* p, std::size_t k) noexcept {
    if (closed_) return false;
    if (count_[k] == kKeep) {
      count_[k] -= shared_blocks.put(k, blocks_[k] + kKeep - kBatch, kBatch);
      if (count_[k] == kKeep) return false;  // the shared cache is full too
    }
    ASAN_POISON_MEMORY_REGION(p, kSmallest << k);
    blocks_[k][count_[k]++] = p;
    return true;
  }

 private:
  void* blocks_[kClasses][kKeep] = {};
  std::size_t count_[kClasses] = {};
  bool closed_ = false;
};
thread_local block_cache blocks;

// Over-aligned blocks come from the aligned operator new, larger ones from the plain one (which
// a program that replaces operator new sees); kept blocks from the plain one too: aligned to
// __STDCPP_DEFAULT_NEW_ALIGNMENT__.
bool over_aligned(std::size_t align) noexcept {
  return align > __STDCPP_DEFAULT_NEW_ALIGNMENT__;
}

}  // namespace

void* op_memory_allocate(std::size_t bytes, std::size_t align) {
  if (over_aligned(align)) return ::operator new (bytes, std::align_val_t{align});
  if (bytes > kLargest) return ::operator new(bytes);
  const std::size_t k = block_cache::size_class(bytes);
  if (void* p = blocks.take(k)) return p;
  return ::operator new(kSmallest << k);
}

void op_memory_deallocate(void* p, std::size_t bytes, std::size_t align) noexcept {
  if (over_aligned(align)) {
    ::operator delete (p, bytes, std::align_val_t{align});
  } else if (bytes > kLargest) {
    ::operator delete(p, bytes);
  } else {
    const std::size_t k = block_cache::size_class(bytes);
    if (!blocks.give(p, k)) ::operator delete(p, kSmallest << k);
  }
}

}  // namespace weft::detail
