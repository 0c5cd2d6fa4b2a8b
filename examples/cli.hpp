// cli.hpp: command-line number parsing shared by the examples.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace example {

// parse_number() reads a flag's whole-number value in [min, max], or prints what is wrong
// (naming the program and the flag) and exits with status 2.
inline long parse_number(const char* program, const char* flag, const char* text, long min,
                         long max) {
  char* end = nullptr;
  errno = 0;
  const long v = text ? std::strtol(text, &end, 10) : 0;
  if (text == nullptr || *text == '\0' || *end != '\0' || errno != 0 || v < min || v > max) {
    std::fprintf(stderr, "%s: %s needs a whole number from %ld to %ld, got '%s'\n", program, flag,
                 min, max, text ? text : "");
    std::exit(2);
  }
  return v;
}

}  // namespace example
