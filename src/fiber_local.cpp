// fiber_local.cpp: the growable per-fiber table of fiber_local values.
#include <atomic>
#include <cstdlib>
#include <new>

#include <weft/fiber_local.hpp>

namespace weft::detail {
namespace {
std::atomic<std::uint32_t> next_index{0};
}

std::uint32_t allocate_local_index() noexcept {
  return next_index.fetch_add(1, std::memory_order_relaxed);
}

void* store_local(std::uint32_t index, void* object, void (*destroy)(void*) noexcept) {
  fiber_state& f = thread_state();
  if (index >= f.locals_size) {
    std::uint32_t size = f.locals_size ? f.locals_size : 8;
    while (size <= index)
      size *= 2;
    void* grown = std::realloc(f.locals, size * sizeof(local_entry));
    if (grown == nullptr) {
      destroy(object);
      throw std::bad_alloc();
    }
    f.locals = static_cast<local_entry*>(grown);
    for (std::uint32_t i = f.locals_size; i < size; ++i)
      f.locals[i] = local_entry{};
    f.locals_size = size;
  }
  f.locals[index] = local_entry{object, destroy};
  return object;
}

}  // namespace weft::detail
