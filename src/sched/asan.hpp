// asan.hpp: telling AddressSanitizer which stack the thread runs on.
//
// ASan does not see Boost.Fiber's stack switches. Without being told, it cannot clean the
// shadow of frames an exception unwinds on a fiber stack, and reports false errors at the
// next throw. Every switch passes through algorithm::pick_next(), which announces the
// destination stack (start_switch); the destination confirms (finish_switch) at the first
// weft code it runs -- the worker's dispatcher too, whose stack runs the reactor's handlers
// (an exception thrown there, by a handler or a completion condition, needs ASan to know the
// stack it unwinds). Each context (fiber, worker main, dispatcher) keeps its own fake stack
// (ASan's home for frames under detect_stack_use_after_return): it is saved in the outgoing
// context's slot, restored from the incoming one's, and recycled when a fiber ends.
// Without ASan all of it compiles to nothing.
#pragma once

#include <cstddef>

namespace weft::detail::asan {

#if defined(__SANITIZE_ADDRESS__)
// start_switch() announces a switch to the stack [bottom, bottom + size). outgoing is where
// the running context's fake stack is kept (nullptr: it is ending, free it); incoming is where
// the destination kept its own (nullptr: a fresh fiber, which gets a spare one).
void start_switch(void** outgoing, void* const* incoming, const void* bottom,
                  std::size_t size) noexcept;
void finish_switch() noexcept;

// heap_block() finds the heap block that holds p: Boost.Fiber allocates a thread's dispatcher
// stack with malloc and keeps the dispatcher's context at its top, so the block that holds
// the context is the dispatcher's stack. False (nothing found) leaves bottom and size alone.
bool heap_block(const void* p, const void** bottom, std::size_t* size) noexcept;

// creating_fiber is a scope in which ASan keeps frames off fake stacks. Boost.Context makes a
// new fiber's first frame (fiber_entry) by jumping onto the new stack from the creator, with
// no annotation: under detect_stack_use_after_return that frame would live in the creator's
// fake stack, which is recycled when the creator ends -- while the new fiber still needs it.
class creating_fiber {
 public:
  creating_fiber() noexcept;
  ~creating_fiber();
  creating_fiber(const creating_fiber&) = delete;
  creating_fiber& operator=(const creating_fiber&) = delete;

 private:
  void* saved_ = nullptr;
};
#else
inline void start_switch(void**, void* const*, const void*, std::size_t) noexcept {}
inline void finish_switch() noexcept {}
inline bool heap_block(const void*, const void**, std::size_t*) noexcept {
  return false;
}
class creating_fiber {
 public:
  creating_fiber() noexcept {}
  ~creating_fiber() {}
  creating_fiber(const creating_fiber&) = delete;
  creating_fiber& operator=(const creating_fiber&) = delete;
};
#endif

}  // namespace weft::detail::asan
