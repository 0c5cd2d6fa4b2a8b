// stack_pool.hpp: fiber stacks, reused across fibers of one executor.
//
// A fiber may finish on another worker than the one it started on, so the free list is
// shared and locked (Boost's pooled_fixedsize_stack is not thread-safe). Stacks are mmap'ed;
// with guard pages the lowest page is PROT_NONE so an overflow faults instead of corrupting.
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

#include <boost/context/stack_context.hpp>

#include <weft/detail/spinlock.hpp>

namespace weft::detail {

class stack_pool {
 public:
  stack_pool(std::size_t stack_size, bool guard_pages);
  stack_pool(const stack_pool&) = delete;
  stack_pool& operator=(const stack_pool&) = delete;
  ~stack_pool();

  boost::context::stack_context allocate();
  void deallocate(boost::context::stack_context& sctx) noexcept;

  // mapped() is the number of stacks currently mapped (in use or cached).
  std::size_t mapped() const noexcept;

 private:
  std::size_t usable_;   // bytes a fiber can use
  std::size_t mapping_;  // bytes mapped per stack, guard page included
  bool guard_;
  std::size_t cache_limit_;
  mutable spinlock lock_;
  std::vector<void*> free_;  // bases of cached mappings
  std::size_t mapped_ = 0;
};

// stack_allocator is the StackAllocator Boost.Fiber copies into each fiber.
struct stack_allocator {
  stack_pool* pool;
  boost::context::stack_context allocate() { return pool->allocate(); }
  void deallocate(boost::context::stack_context& sctx) noexcept { pool->deallocate(sctx); }
};

}  // namespace weft::detail
