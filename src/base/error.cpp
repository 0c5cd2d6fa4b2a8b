// error.cpp: the weft error category.
#include <weft/error.hpp>

namespace weft {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "weft"; }
  std::string message(int code) const override {
    switch (static_cast<errc>(code)) {
      case errc::lookup_failed:
        return "context variable has no value and no default";
      case errc::token_used:
        return "token was already used";
      case errc::token_wrong_var:
        return "token was created by another context variable";
      case errc::token_wrong_context:
        return "token was created in another context";
      case errc::context_already_entered:
        return "context is already being run";
      case errc::executor_closed:
        return "executor is shut down";
      case errc::not_in_executor:
        return "not called from a fiber of an executor";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::cancelled:
        return "cancelled";
      case errc::deadline_exceeded:
        return "deadline exceeded";
      case errc::invalid_task:
        return "task has no fiber (empty, moved-from or already got)";
      case errc::would_deadlock:
        return "waiting here would deadlock";
      case errc::channel_closed:
        return "channel is closed";
    }
    return "unknown weft error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

error::error(errc e, const std::string& message)
    : std::system_error(make_error_code(e), message), message_(message) {}

}  // namespace weft
