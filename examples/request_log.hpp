// request_log.hpp: the request id as a context_var, and spdlog flags that print it (%*) and
// the W3C trace (%&) in every log line -- of whatever fiber logs, on whatever worker. Shared
// by the examples.
#pragma once

#include <memory>
#include <string>

#include <spdlog/pattern_formatter.h>
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
    // traceparent is "00-<trace-id>-<span-id>-<flags>": the middle two, as trace/span.
    const std::string text = t->parent.to_string();
    dest.append(text.data() + 3, text.data() + 35);
    dest.push_back('/');
    dest.append(text.data() + 36, text.data() + 52);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<trace_flag>();
  }
};

// log_with_request_id() gives the default logger `pattern`, in which %* is the request id
// and %& the trace.
inline void log_with_request_id(const char* pattern) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<request_id_flag>('*').add_flag<trace_flag>('&').set_pattern(pattern);
  spdlog::set_formatter(std::move(formatter));
}

}  // namespace example
