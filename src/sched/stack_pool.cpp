// stack_pool.cpp: fiber stacks carved from mmap'ed slabs, with optional guard pages.
#include "sched/stack_pool.hpp"

#include <weft/detail/fiber_state.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <mutex>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace weft::detail {
namespace {

std::size_t page_size() noexcept {
  return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

std::size_t round_up(std::size_t n, std::size_t to) noexcept {
  return (n + to - 1) / to * to;
}

}  // namespace

std::atomic<std::size_t> stack_limit_for_testing{static_cast<std::size_t>(-1)};

stack_pool* g_stack_pools = nullptr;

namespace {
std::mutex& stack_pools_lock() noexcept {
  static std::mutex m;  // constexpr constructor: no static initialisation order to mind
  return m;
}
}  // namespace

stack_exhausted::stack_exhausted(bool guarded, std::size_t carved, bool held_elsewhere) noexcept
    : held_elsewhere_(held_elsewhere) {
  if (guarded) {
    std::snprintf(message_, sizeof message_,
                  "weft: cannot map a guarded fiber stack after %zu stacks: each guard region "
                  "is a separate kernel mapping; raise vm.max_map_count (sysctl) or turn "
                  "executor_options::guard_pages off",
                  carved);
  } else {
    std::snprintf(message_, sizeof message_,
                  "weft: cannot map fiber stacks after %zu stacks: out of address space or "
                  "memory; lower executor_options::stack_size",
                  carved);
  }
}

stack_pool::stack_pool(std::size_t stack_size, std::size_t guard_size)
    : usable_(round_up(stack_size, page_size())),
      guard_bytes_(guard_size == 0 ? 0 : round_up(guard_size, page_size())),
      stride_(usable_ + guard_bytes_),
      guard_(guard_size != 0),
      hot_limit_(std::max<std::size_t>(64, (std::size_t{64} << 20) / stride_)) {
  std::lock_guard<std::mutex> g(stack_pools_lock());
  debug_next_ = g_stack_pools;
  g_stack_pools = this;
}

stack_pool::~stack_pool() {
  {
    std::lock_guard<std::mutex> g(stack_pools_lock());
    stack_pool** at = &g_stack_pools;
    while (*at != this)
      at = &(*at)->debug_next_;
    *at = debug_next_;
  }
  // The executor joined its threads first, and every fiber's stack came back with its context.
  assert(in_use_ == 0 && "a fiber stack outlived its executor");
  for (const slab& s : slabs_) {
#if defined(__SANITIZE_ADDRESS__)
    // A fiber's entry frame never returns: its poison stays in the shadow. glibc maps a new
    // thread's stack block with its own mmap, which ASan's interceptor does not see, and ASan
    // then clears only the stack and TLS ranges it computes -- which missed some of libweft's
    // thread_locals: mapped here next, the first write to one was a false
    // "stack-buffer-underflow" (CI, in the stress test that makes 100 executors in a row).
    ASAN_UNPOISON_MEMORY_REGION(s.base, s.bytes);
#endif
    ::munmap(s.base, s.bytes);
  }
}

void* stack_pool::carve() {
  if (carved_ >= stack_limit_for_testing.load(std::memory_order_relaxed)) {
    throw stack_exhausted(guard_, carved_, false);
  }
  if (next_ == end_) {
    // Slabs double from 8 stacks up to 256: small pools stay small, big ones map rarely.
    const std::size_t count =
        std::min<std::size_t>(256, 8u << std::min<std::size_t>(slabs_.size(), 5));
    const std::size_t bytes = count * stride_;
    slabs_.reserve(slabs_.size() + 1);
    void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) throw stack_exhausted(guard_, carved_, false);
    slabs_.push_back({base, bytes});
    next_ = static_cast<char*>(base);
    end_ = next_ + bytes;
  }
  char* stack = next_;
  if (guard_ && ::mprotect(stack, guard_bytes_, PROT_NONE) != 0) {
    throw stack_exhausted(true, carved_, false);
  }
  // Room for every stack in either list, so that deallocate() never allocates.
  if (free_.capacity() <= carved_ || cold_.capacity() <= carved_) {
    free_.reserve(2 * (carved_ + 1));
    cold_.reserve(2 * (carved_ + 1));
  }
  next_ += stride_;
  ++carved_;
  return stack;
}

namespace {
// The calling worker's cache (initial-exec: one %fs-relative load).
constinit thread_local stack_pool::cache* tl_cache WEFT_TLS_MODEL = nullptr;
}  // namespace

boost::context::stack_context stack_pool::context_of(void* base) const noexcept {
#if defined(__SANITIZE_ADDRESS__)
  // ASan does not see fiber switches: the shadow of a reused stack still carries the poison
  // of the previous fiber's frames.
  ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>(base) + (stride_ - usable_), usable_);
#endif
  boost::context::stack_context sctx;
  sctx.size = usable_;
  sctx.sp = static_cast<char*>(base) + stride_;  // stacks grow down from the top
  return sctx;
}

boost::context::stack_context stack_pool::allocate() {
  if (cache* c = tl_cache; c != nullptr && c->owner == this && c->count != 0) {
    return context_of(c->stacks[--c->count]);
  }
  void* base;
  {
    std::lock_guard<spinlock> g(lock_);
    if (!free_.empty()) {
      base = free_.back();
      free_.pop_back();
    } else if (!cold_.empty()) {
      base = cold_.back();
      cold_.pop_back();
    } else {
      try {
        base = carve();
      } catch (const stack_exhausted&) {
        // Stacks in use come back when their fibers end: say so, and have the first one given
        // back go where any worker finds it.
        if (in_use_ == 0) throw;
        starved_.store(true, std::memory_order_release);
        throw stack_exhausted(guard_, carved_, true);
      }
    }
    ++in_use_;
  }
  return context_of(base);
}

void stack_pool::deallocate(boost::context::stack_context& sctx) noexcept {
  void* base = static_cast<char*>(sctx.sp) - stride_;
  // Work waits for a stack: not into this worker's cache, where only this worker would see it.
  if (starved_.load(std::memory_order_relaxed)) [[unlikely]] {
    give_back(base);
    return;
  }
  if (cache* c = tl_cache; c != nullptr && c->owner == this && c->count < std::size(c->stacks)) {
    c->stacks[c->count++] = base;
    return;
  }
  give_back(base);
}

void stack_pool::give_back(void* base) noexcept {
  std::lock_guard<spinlock> g(lock_);
  free_.push_back(base);  // capacity reserved in carve()
  --in_use_;
  starved_.store(false, std::memory_order_release);
}

void stack_pool::attach(cache& c) noexcept {
  c.owner = this;
  tl_cache = &c;
}

void stack_pool::detach(cache& c) noexcept {
  if (tl_cache == &c) tl_cache = nullptr;
  while (c.count != 0)
    give_back(c.stacks[--c.count]);
  c.owner = nullptr;
}

bool stack_pool::trim(std::size_t batch) noexcept {
  if (starved_.load(std::memory_order_relaxed)) [[unlikely]] {
    // This worker goes idle holding stacks that the work waiting for one cannot reach.
    if (cache* c = tl_cache; c != nullptr && c->owner == this) {
      while (c->count != 0)
        give_back(c->stacks[--c->count]);
    }
  }
  std::vector<void*> taken;
  {
    std::lock_guard<spinlock> g(lock_);
    if (free_.size() <= hot_limit_) return false;
    // The oldest idle stacks leave circulation while their pages are dropped.
    const auto n = static_cast<std::ptrdiff_t>(std::min(batch, free_.size() - hot_limit_));
    try {
      taken.assign(free_.begin(), free_.begin() + n);
    } catch (...) {
      return false;  // no memory for the list: nothing is lost by trimming later
    }
    free_.erase(free_.begin(), free_.begin() + n);
  }
  for (void* base : taken) {
    ::madvise(static_cast<char*>(base) + (stride_ - usable_), usable_, MADV_DONTNEED);
  }
  std::lock_guard<spinlock> g(lock_);
  cold_.insert(cold_.end(), taken.begin(), taken.end());  // capacity reserved in carve()
  return free_.size() > hot_limit_;
}

}  // namespace weft::detail
