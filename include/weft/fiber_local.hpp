// weft/fiber_local.hpp: one value per fiber, the drop-in replacement for `thread_local T x;`.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>

#include <weft/detail/fiber_state.hpp>

namespace weft {

// max_fiber_locals is how many fiber_locals one process may make in all. An index is never
// reused: fibers alive when a fiber_local goes may still hold a value under its index (freed
// when they end), and a new fiber_local there would read that value as its own. Past the
// limit the constructor throws instead of letting two fiber_locals alias; a fiber's table
// of values also stays bounded (it grows to the highest index the fiber uses).
inline constexpr std::uint32_t max_fiber_locals = 1u << 20;

namespace detail {

// allocate_local_index() hands out the index of a new fiber_local (never reused); past
// max_fiber_locals it throws weft::error(invalid_argument).
std::uint32_t allocate_local_index();

// find_local() is the calling fiber's value at index, or nullptr if it has none yet.
inline void* find_local(std::uint32_t index) noexcept {
  const fiber_state* f = tl_fiber;
  if (f != nullptr && index < f->locals_size) return f->locals[index].object;
  return nullptr;
}

// store_local() installs object as the calling fiber's value at index; destroy runs when the
// fiber ends. If storing fails (out of memory) the object is destroyed and the error thrown.
void* store_local(std::uint32_t index, void* object, void (*destroy)(void*) noexcept);

}  // namespace detail

// fiber_local<T> gives each fiber (and each plain thread outside fibers) its own T, created
// on first use in that fiber and destroyed when the fiber ends. It is never inherited: a
// child fiber starts with a fresh value. Correct when fibers migrate between worker threads,
// unlike thread_local. Non-copyable; define it at namespace scope (not at run time: see
// max_fiber_locals) and let it outlive its uses.
template <class T>
class fiber_local {
 public:
  // fiber_local() starts each fiber's value as T{}. Both constructors throw
  // weft::error(invalid_argument) once max_fiber_locals fiber_locals were made.
  fiber_local() : index_(detail::allocate_local_index()) {}

  // fiber_local(init) starts each fiber's value as init(), called in that fiber on first use.
  explicit fiber_local(std::function<T()> init)
      : init_(std::move(init)), index_(detail::allocate_local_index()) {}

  fiber_local(const fiber_local&) = delete;
  fiber_local& operator=(const fiber_local&) = delete;

  // get() is the calling fiber's value. Never blocks; allocates only on first use.
  T& get() {
    if (void* p = detail::find_local(index_)) return *static_cast<T*>(p);
    return create();
  }
  T& operator*() { return get(); }
  T* operator->() { return &get(); }

 private:
  // A value whose destructor throws has its exception reported, not the process terminated.
  static void destroy(void* p) noexcept {
    try {
      delete static_cast<T*>(p);
    } catch (...) {
      detail::report_unhandled_here(std::current_exception());
    }
  }

  T& create() {
    T* object = init_ ? new T(init_()) : new T{};
    return *static_cast<T*>(detail::store_local(index_, object, &destroy));
  }

  std::function<T()> init_;
  std::uint32_t index_;
};

}  // namespace weft
