// asan.hpp: telling AddressSanitizer which stack the thread runs on.
//
// ASan does not see Boost.Fiber's stack switches. Without being told, it cannot clean the
// shadow of frames an exception unwinds on a fiber stack, and reports false errors at the
// next throw. Every switch passes through algorithm::pick_next(), which announces the
// destination stack (start_switch); the destination confirms (finish_switch) at the first
// weft code it runs. Without ASan both compile to nothing.
#pragma once

#include <cstddef>

namespace weft::detail::asan {

#if defined(__SANITIZE_ADDRESS__)
void start_switch(const void* bottom, std::size_t size) noexcept;
void finish_switch() noexcept;
#else
inline void start_switch(const void*, std::size_t) noexcept {}
inline void finish_switch() noexcept {}
#endif

}  // namespace weft::detail::asan
