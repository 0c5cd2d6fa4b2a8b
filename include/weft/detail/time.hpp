// weft/detail/time.hpp: turning any duration or time point into a steady_clock deadline
// without overflow (hours::max(), time_point::min() and friends saturate).
#pragma once

#include <chrono>
#include <type_traits>

namespace weft::detail {

using steady_clock = std::chrono::steady_clock;

// from_now() is `now + seconds`, saturated to [now, time_point::max()].
inline steady_clock::time_point from_now(steady_clock::time_point now, double seconds) noexcept {
  if (!(seconds > 0)) return seconds != seconds ? steady_clock::time_point::max() : now;
  const double room = std::chrono::duration<double>(steady_clock::time_point::max() - now).count();
  if (seconds >= room - 1.0) return steady_clock::time_point::max();
  return now +
         std::chrono::duration_cast<steady_clock::duration>(
             std::chrono::duration<double>(seconds)) +
         steady_clock::duration(1);  // never early, whatever the rounding
}

// deadline_after() is now + d, saturated.
template <class Rep, class Period>
steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
  const auto now = steady_clock::now();
  const double seconds = std::chrono::duration<double>(d).count();
  // Up to about a century the sum is exact (and fits in nanoseconds); beyond, saturate.
  if (seconds > 0 && seconds < 3.0e9) return now + std::chrono::ceil<steady_clock::duration>(d);
  return from_now(now, seconds);
}

// deadline_at() is tp as a steady_clock time point, saturated.
template <class Clock, class Dur>
steady_clock::time_point deadline_at(std::chrono::time_point<Clock, Dur> tp) noexcept {
  if constexpr (std::is_same_v<Clock, steady_clock> &&
                std::is_same_v<Dur, steady_clock::duration>) {
    return tp;
  } else {
    const auto now = Clock::now();
    const double seconds = std::chrono::duration<double>(tp.time_since_epoch()).count() -
                           std::chrono::duration<double>(now.time_since_epoch()).count();
    return from_now(steady_clock::now(), seconds);
  }
}

}  // namespace weft::detail
