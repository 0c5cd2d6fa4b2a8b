// stack_pool.cpp: mmap'ed fiber stacks with an optional guard page, cached for reuse.
#include "stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <new>

namespace weft::detail {
namespace {

std::size_t page_size() noexcept { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

std::size_t round_up(std::size_t n, std::size_t to) noexcept { return (n + to - 1) / to * to; }

}  // namespace

stack_pool::stack_pool(std::size_t stack_size, bool guard_pages)
    : usable_(round_up(stack_size, page_size())),
      mapping_(usable_ + (guard_pages ? page_size() : 0)),
      guard_(guard_pages),
      // Keep up to 64 MiB (and at least 64 stacks) of address space cached for reuse.
      cache_limit_(std::max<std::size_t>(64, (std::size_t{64} << 20) / mapping_)) {
  free_.reserve(cache_limit_);
}

stack_pool::~stack_pool() {
  for (void* base : free_) ::munmap(base, mapping_);
}

boost::context::stack_context stack_pool::allocate() {
  void* base = nullptr;
  {
    std::lock_guard<spinlock> g(lock_);
    if (!free_.empty()) {
      base = free_.back();
      free_.pop_back();
    } else {
      ++mapped_;
    }
  }
  if (base == nullptr) {
    base = ::mmap(nullptr, mapping_, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED || (guard_ && ::mprotect(base, page_size(), PROT_NONE) != 0)) {
      if (base != MAP_FAILED) ::munmap(base, mapping_);
      std::lock_guard<spinlock> g(lock_);
      --mapped_;
      throw std::bad_alloc();
    }
  }
  boost::context::stack_context sctx;
  sctx.size = usable_;
  sctx.sp = static_cast<char*>(base) + mapping_;  // stacks grow down from the top
  return sctx;
}

void stack_pool::deallocate(boost::context::stack_context& sctx) noexcept {
  void* base = static_cast<char*>(sctx.sp) - mapping_;
  {
    std::lock_guard<spinlock> g(lock_);
    if (free_.size() < cache_limit_) {
      free_.push_back(base);
      return;
    }
    --mapped_;
  }
  ::munmap(base, mapping_);
}

std::size_t stack_pool::mapped() const noexcept {
  std::lock_guard<spinlock> g(lock_);
  return mapped_;
}

}  // namespace weft::detail
