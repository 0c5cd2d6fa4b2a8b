// fiber_local.cpp: the growable per-fiber table of fiber_local values.
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

#include <weft/error.hpp>
#include <weft/fiber_local.hpp>

namespace weft::detail {
namespace {
std::atomic<std::uint32_t> next_index{0};
}

std::uint32_t allocate_local_index() {
  // Never past the limit, even by refused attempts: the counter must not wrap.
  std::uint32_t index = next_index.load(std::memory_order_relaxed);
  do {
    if (index >= max_fiber_locals) {
      throw error(errc::invalid_argument,
                  "weft: fiber_local: the process has made " + std::to_string(max_fiber_locals) +
                      " fiber_locals, the most there can be (indexes are never reused: define "
                      "fiber_locals at namespace scope, not at run time)");
    }
  } while (!next_index.compare_exchange_weak(index, index + 1, std::memory_order_relaxed));
  return index;
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
