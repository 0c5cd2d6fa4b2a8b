// tsan.hpp: telling ThreadSanitizer which fiber the thread runs, and the hand-overs it
// cannot see.
//
// TSan keeps a state per thread: the vector clock its race checks use and a shadow call
// stack (the frames its reports print). Boost.Context switches stacks in assembly that TSan
// does not follow, so without help every fiber of a worker would share its thread's state:
// two fibers that race on one worker would be "ordered" by program order, and the shadow
// stack would be the frames of whichever fiber pushed last. TSan's fiber API gives each
// context a state of its own: weft creates one per pool fiber (with its record), one for each
// worker's dispatcher, takes the thread's own for its main context, and announces every
// switch right before Boost jumps (scheduler.cpp: algorithm::switch_to). The switch
// synchronizes (flags 0): what one context did happens-before what the next one on the same
// thread does, as it really does; across threads the hand-over of a fiber (a ready queue's
// spinlock, a waiter list's lock, a channel's CAS) is std::atomic, which TSan sees.
//
// The shadow call stack: an instrumented function pushes a frame on entry and pops it on
// return, on whatever state is current. A frame that is entered on one fiber and returns on
// another (algorithm::pick_next() runs on the fiber that suspends and returns on the one
// that resumes) would pop another fiber's frame. So the files whose frames span a switch --
// scheduler.cpp, and executor.cpp, where Boost's fiber entry templates are instantiated (they
// jump to a new stack and back when a fiber is made, and a dead fiber's frames return on the
// context that frees its stack) -- are compiled without function entry/exit instrumentation
// (meson.build); their memory accesses are still checked. The functions below are
// no_sanitize_thread for the same reason.
//
// Without TSan all of it compiles to nothing.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define WEFT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif

namespace weft::detail::tsan {

#if defined(WEFT_TSAN)
// create_fiber() is the state of a fiber about to be made; destroy_fiber() frees it after the
// fiber's last switch away (by whoever destroys its record: the fiber no longer runs).
void* create_fiber() noexcept;
void destroy_fiber(void* fiber) noexcept;

// switch_to_*() announce the switch about to happen to: a pool fiber's state, the worker's
// main context (the thread's own state), its dispatcher (made at the first switch to it),
// or a raw Boost fiber (a state per worker shared by all of them: they have no record to
// keep one in, and no end weft sees). Call right before the jump, with no instrumented frame
// left to return on this stack.
void switch_to_fiber(void* fiber) noexcept;
void switch_to_main() noexcept;
void switch_to_dispatcher() noexcept;
void switch_to_raw() noexcept;
// thread_ends() is called on the worker's main context after Boost's dispatcher has ended
// (algorithm::~algorithm): the thread's own state is current again; the dispatcher's and
// raw fibers' states are freed.
void thread_ends() noexcept;

// release() / acquire() are a happens-before edge TSan cannot see itself: a hand-over
// through Boost.Fiber's compiled, uninstrumented code (its reference counts, its remote
// ready queue).
void release(const void* addr) noexcept;
void acquire(const void* addr) noexcept;
#else
inline void* create_fiber() noexcept {
  return nullptr;
}
inline void destroy_fiber(void*) noexcept {}
inline void switch_to_fiber(void*) noexcept {}
inline void switch_to_main() noexcept {}
inline void switch_to_dispatcher() noexcept {}
inline void switch_to_raw() noexcept {}
inline void thread_ends() noexcept {}
inline void release(const void*) noexcept {}
inline void acquire(const void*) noexcept {}
#endif

}  // namespace weft::detail::tsan
