// weft/error.hpp: the one exception type weft throws on misuse, and its error codes.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>

namespace weft {

// errc lists every misuse weft reports. Values start at 1 so that 0 stays "no error".
enum class errc {
  lookup_failed = 1,        // context_var::get() with no value and no default
  token_used,               // reset() with a token that was already used
  token_wrong_var,          // reset() with a token made by another context_var
  token_wrong_context,      // reset() in a context other than the one the token was made in
  context_already_entered,  // context::run() on a context object that is being run already
  executor_closed,          // executor::spawn/post/run after shutdown(), from outside the pool
  not_in_executor,          // weft::spawn / task_group() where there is no current executor
  invalid_argument,         // bad option: 0 threads, stack too small, ...
  cancelled,                // the fiber's cancellation was requested (see task_group)
  deadline_exceeded,        // the fiber's deadline passed (see with_deadline)
  invalid_task,             // get()/wait() on a task with no fiber: empty, moved-from or got
  would_deadlock,           // executor::join() from a fiber of that same executor
  channel_closed,           // channel::send() (or a select's send_case) on a closed channel
};

// error_category() is the category of every weft::error; its name() is "weft".
const std::error_category& error_category() noexcept;

// make_error_code() lets weft::errc compare equal to the code() of a weft::error.
std::error_code make_error_code(errc e) noexcept;

// error is thrown for every misuse. what() is the full message, naming the variable or
// executor involved; code() == make_error_code(the errc).
class error : public std::system_error {
 public:
  // error(e, message): what() is message, code() is make_error_code(e).
  error(errc e, const std::string& message);
  const char* what() const noexcept override { return message_.what(); }

 private:
  std::runtime_error message_;  // refcounted string: copying an error never throws
};

}  // namespace weft

template <>
struct std::is_error_code_enum<weft::errc> : std::true_type {};
