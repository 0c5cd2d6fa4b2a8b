// weft/signal_dump.hpp: a dump of every fiber (executor::dump()) from a running program,
// without a debugger: send it a signal.
#pragma once

#include <atomic>
#include <thread>

#include <weft/executor.hpp>

namespace weft {

// dump_on_signal makes a signal write executor::dump() of one executor to a file descriptor
// (stderr by default), as Go prints its goroutines on SIGQUIT -- but the program carries on.
// Opt-in: nothing is installed until one is made.
//
//   weft::executor ex;
//   weft::dump_on_signal dumper(ex, SIGUSR1);   // kill -USR1 <pid>
//
// The signal handler only writes one byte to a pipe (async-signal-safe, no allocation, no
// lock); a thread of the dumper's own reads it and writes the dump. Signals that arrive while
// a dump is being written are merged into the next one. The executor must outlive the dumper.
class dump_on_signal {
 public:
  // dump_on_signal(ex, signo, fd) installs the handler for signo (the previous action is put
  // back by the destructor). Throws weft::error(invalid_argument) for a signal that cannot
  // be caught (SIGKILL, SIGSTOP, out of range), for one that reports a synchronous fault or
  // an abort (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT: the handler would
  // return to the faulting instruction and turn a crash into an endless loop of dumps) or
  // that another dump_on_signal holds -- the message names the signal -- and
  // std::system_error if the pipe or the thread cannot be made.
  dump_on_signal(const executor& ex, int signo, int fd = 2);
  dump_on_signal(const dump_on_signal&) = delete;
  dump_on_signal& operator=(const dump_on_signal&) = delete;
  ~dump_on_signal();

  // dumps() is the number of dumps written so far.
  unsigned long dumps() const noexcept;

 private:
  void serve() noexcept;

  const executor& ex_;
  int signo_;
  int fd_;
  int wake_read_;  // the signal's pipe (kept for the process's lifetime, see signal_dump.cpp)
  std::atomic<unsigned long> dumps_{0};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace weft
