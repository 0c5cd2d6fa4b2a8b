// asymmetric_fence.cpp: membarrier(2), registered once per process.
#include "base/asymmetric_fence.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace weft::detail::asymmetric_fence {

std::atomic<bool> available{false};

namespace {
long membarrier(int cmd) noexcept {
  return ::syscall(SYS_membarrier, cmd, 0u, 0);
}
}  // namespace

void init() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    const long cmds = membarrier(MEMBARRIER_CMD_QUERY);
    const bool ok = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
                    membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
    available.store(ok, std::memory_order_seq_cst);
  });
}

bool heavy() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // Cannot fail once registered; should it, the caller must not rely on the handshake.
  const bool ok = !available.load(std::memory_order_relaxed) ||
                  membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return ok;
}

}  // namespace weft::detail::asymmetric_fence
