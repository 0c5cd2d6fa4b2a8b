// request_log.hpp: the request id as a context_var, spdlog flags that print it (%*) and the
// W3C trace (%&) in every log line -- of whatever fiber logs, on whatever worker -- and a file
// sink that formats those lines outside its lock. Shared by the examples.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <spdlog/details/file_helper.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>

#include <weft/context_var.hpp>
#include <weft/w3c.hpp>

namespace example {

// request_id is "-" outside any request.
inline weft::context_var<std::string> request_id("request_id", "-");

// request_id_flag formats %* as the calling fiber's current request id.
class request_id_flag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string& id = request_id.get();
    dest.append(id.data(), id.data() + id.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<request_id_flag>();
  }
};

// trace_flag formats %& as the calling fiber's W3C trace: "<trace-id>/<span-id>", or "-".
class trace_flag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const weft::w3c::trace_context* t = weft::w3c::trace.try_get();
    if (t == nullptr) {
      dest.push_back('-');
      return;
    }
    // The trace-id and parent-id of traceparent, in hex, straight into the line.
    append_hex(dest, t->parent.trace_id.data(), t->parent.trace_id.size());
    dest.push_back('/');
    append_hex(dest, t->parent.parent_id.data(), t->parent.parent_id.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<trace_flag>();
  }

 private:
  static void append_hex(spdlog::memory_buf_t& dest, const std::uint8_t* bytes, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    for (std::size_t i = 0; i < n; ++i) {
      dest.push_back(digits[bytes[i] >> 4]);
      dest.push_back(digits[bytes[i] & 0xf]);
    }
  }
};

// log_with_request_id() gives the default logger `pattern`, in which %* is the request id
// and %& the trace.
inline void log_with_request_id(const char* pattern) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<request_id_flag>('*').add_flag<trace_flag>('&').set_pattern(pattern);
  spdlog::set_formatter(std::move(formatter));
}

// file_sink appends log lines to a file, buffered. spdlog's own file sinks format each line
// under the sink's mutex: workers that log at once wait for each other's formatting (the
// flags above included), and a worker blocked on a std::mutex holds up every fiber queued on
// it. This one formats on the calling thread first -- the flags read the calling fiber's
// context there, as before -- and holds its lock only to append the finished line. A line is
// formatted and written within one call, in which a fiber never switches: a formatter per
// thread is safe.
class file_sink final : public spdlog::sinks::sink {
 public:
  // Throws spdlog::spdlog_ex if the file cannot be opened.
  explicit file_sink(const std::string& path) { file_.open(path); }

  void log(const spdlog::details::log_msg& msg) override {
    thread_local spdlog::memory_buf_t line;
    line.clear();
    this_threads_formatter().format(msg, line);
    std::lock_guard<std::mutex> g(mutex_);
    file_.write(line);
  }
  void flush() override {
    std::lock_guard<std::mutex> g(mutex_);
    file_.flush();
  }
  void set_pattern(const std::string& pattern) override {
    set_formatter(std::make_unique<spdlog::pattern_formatter>(pattern));
  }
  void set_formatter(std::unique_ptr<spdlog::formatter> f) override {
    std::lock_guard<std::mutex> g(mutex_);
    formatter_ = std::move(f);
    version_.store(next_version(), std::memory_order_release);
  }

 private:
  // A formatter keeps state between lines (the time it last formatted): each thread formats
  // with its own copy of the sink's, made again after set_formatter().
  spdlog::formatter& this_threads_formatter() {
    struct copy {
      unsigned version = 0;
      std::unique_ptr<spdlog::formatter> f;
    };
    thread_local copy mine;
    if (mine.version != version_.load(std::memory_order_acquire)) {
      std::lock_guard<std::mutex> g(mutex_);
      mine.f = formatter_->clone();
      mine.version = version_.load(std::memory_order_relaxed);
    }
    return *mine.f;
  }
  // Versions are unique across sinks: a thread's copy is never taken for another sink's.
  static unsigned next_version() {
    static std::atomic<unsigned> last{0};
    return ++last;
  }

  std::mutex mutex_;
  spdlog::details::file_helper file_;
  std::unique_ptr<spdlog::formatter> formatter_ = std::make_unique<spdlog::pattern_formatter>();
  std::atomic<unsigned> version_{next_version()};
};

}  // namespace example
