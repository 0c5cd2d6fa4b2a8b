// signal_dump.cpp: the handler writes a byte to a pipe; a thread turns it into a dump.
#include <weft/signal_dump.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <system_error>

namespace weft {
namespace {

// One pipe per signal number, made on first use and never closed: a handler that loaded the
// write end just before the dumper went away must not write into a descriptor that was
// closed and reused for something else meanwhile.
struct signal_pipe {
  std::atomic<int> write_end{-1};  // what the handler writes to; -1: no dumper
  int read_end = -1;
  int write_fd = -1;
  struct sigaction previous {};
  bool held = false;  // guarded by pipes_mutex
};
signal_pipe pipes[NSIG];
std::mutex pipes_mutex;

extern "C" void on_dump_signal(int signo) {
  const int saved = errno;
  const int fd = pipes[signo].write_end.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const char byte = 1;
    // Non-blocking: a full pipe already holds a request for a dump.
    [[maybe_unused]] const ssize_t n = ::write(fd, &byte, 1);
  }
  errno = saved;
}

[[noreturn]] void refuse(int signo, const std::string& why) {
  std::string name = "signal " + std::to_string(signo);
  if (signo > 0 && signo < NSIG) {
    if (const char* abbrev = ::sigabbrev_np(signo)) name += std::string(" (SIG") + abbrev + ")";
  }
  throw error(errc::invalid_argument, "weft: dump_on_signal: " + name + " " + why);
}

// is_fault_signal() is true for the signals the kernel sends the thread that caused them
// (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS) and for SIGABRT, which abort() raises to
// end the process: a handler that returns re-runs the faulting instruction, so a crash would
// become an endless loop of dumps instead of a core file.
bool is_fault_signal(int signo) noexcept {
  switch (signo) {
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGSYS:
    case SIGABRT:
      return true;
    default:
      return false;
  }
}

void write_all(int fd, const std::string& text) noexcept {
  const char* p = text.data();
  std::size_t left = text.size();
  while (left != 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to write: the dump is lost, the program carries on
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace

dump_on_signal::dump_on_signal(const executor& ex, int signo, int fd)
    : ex_(ex), signo_(signo), fd_(fd) {
  if (signo <= 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP) {
    refuse(signo, "cannot be caught");
  }
  if (is_fault_signal(signo)) {
    refuse(signo, "reports a fault or an abort: the process must end on it, not carry on");
  }
  std::lock_guard<std::mutex> g(pipes_mutex);
  signal_pipe& p = pipes[signo];
  if (p.held) refuse(signo, "already dumps another executor");
  if (p.read_end < 0) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0) {
      throw std::system_error(errno, std::generic_category(), "weft: dump_on_signal: pipe");
    }
    p.read_end = ends[0];
    p.write_fd = ends[1];
  }
  // A request left from an earlier dumper is not this one's.
  char drain[64];
  while (::read(p.read_end, drain, sizeof drain) > 0) {
  }
  wake_read_ = p.read_end;
  thread_ = std::thread([this] { serve(); });
  struct sigaction action {};
  action.sa_handler = on_dump_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  p.write_end.store(p.write_fd, std::memory_order_relaxed);
  if (::sigaction(signo, &action, &p.previous) != 0) {
    const int e = errno;
    p.write_end.store(-1, std::memory_order_relaxed);
    stopping_ = true;
    const char byte = 0;
    [[maybe_unused]] const ssize_t n = ::write(p.write_fd, &byte, 1);
    thread_.join();
    throw std::system_error(e, std::generic_category(), "weft: dump_on_signal: sigaction");
  }
  p.held = true;
}

dump_on_signal::~dump_on_signal() {
  std::lock_guard<std::mutex> g(pipes_mutex);
  signal_pipe& p = pipes[signo_];
  ::sigaction(signo_, &p.previous, nullptr);
  p.write_end.store(-1, std::memory_order_relaxed);
  stopping_ = true;
  const char byte = 0;
  [[maybe_unused]] const ssize_t n = ::write(p.write_fd, &byte, 1);
  thread_.join();
  p.held = false;
}

unsigned long dump_on_signal::dumps() const noexcept {
  return dumps_.load(std::memory_order_acquire);
}

void dump_on_signal::serve() noexcept {
  for (;;) {
    pollfd waiting{wake_read_, POLLIN, 0};
    if (::poll(&waiting, 1, -1) < 0 && errno != EINTR) return;
    char bytes[64];
    bool wanted = false;
    for (ssize_t n; (n = ::read(wake_read_, bytes, sizeof bytes)) > 0;) {
      for (ssize_t i = 0; i < n; ++i)
        wanted = wanted || bytes[i] == 1;
    }
    if (stopping_.load()) return;
    if (!wanted) continue;
    try {
      std::ostringstream text;
      ex_.dump(text);
      write_all(fd_, text.str());
    } catch (const std::exception& e) {
      write_all(fd_, std::string("weft: dump_on_signal: no dump: ") + e.what() + "\n");
    } catch (...) {
      write_all(fd_, "weft: dump_on_signal: no dump\n");
    }
    dumps_.fetch_add(1, std::memory_order_release);
  }
}

}  // namespace weft
