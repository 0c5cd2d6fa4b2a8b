// assert.cpp: what a failed internal check does (see weft/detail/assert.hpp).
#include <weft/detail/assert.hpp>

#include <cstdio>
#include <cstdlib>

namespace weft::detail {

void assertion_failed(const char* condition, const char* what, const char* file,
                      int line) noexcept {
  std::fprintf(stderr, "weft: internal check failed at %s:%d: %s (%s)\n", file, line, what,
               condition);
  std::abort();
}

}  // namespace weft::detail
