// weft/detail/assert.hpp: checks of weft's internal invariants (never of user input).
//
// Active when weft is built with -DWEFT_CHECKS (meson does so for debug and sanitizer
// builds); otherwise they compile to nothing. A failed check is a bug in weft: it prints
// what broke and where, and aborts.
#pragma once

namespace weft::detail {
[[noreturn]] void assertion_failed(const char* condition, const char* what, const char* file,
                                   int line) noexcept;
}  // namespace weft::detail

#if defined(WEFT_CHECKS)
#define WEFT_ASSERT(condition, what)  \
  ((condition) ? static_cast<void>(0) \
               : ::weft::detail::assertion_failed(#condition, what, __FILE__, __LINE__))
#else
#define WEFT_ASSERT(condition, what) static_cast<void>(0)
#endif
