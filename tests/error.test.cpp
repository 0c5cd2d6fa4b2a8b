// Tests of weft::error and its category.
#include <catch2/catch.hpp>

#include <type_traits>

#include <weft/error.hpp>

static_assert(std::is_base_of_v<std::system_error, weft::error>);
static_assert(std::is_nothrow_copy_constructible_v<weft::error>);
static_assert(std::is_error_code_enum_v<weft::errc>);

TEST_CASE("errors carry their code, the weft category and the message as given", "[error]") {
  const weft::error e(weft::errc::lookup_failed, "weft: context_var 'x' has no value");
  CHECK(e.code() == weft::errc::lookup_failed);
  CHECK(e.code().category() == weft::error_category());
  CHECK(std::string(e.what()) == "weft: context_var 'x' has no value");
  CHECK(std::string(weft::error_category().name()) == "weft");
}

TEST_CASE("every errc has its own message and value", "[error]") {
  using weft::errc;
  const errc all[] = {errc::lookup_failed,
                      errc::token_used,
                      errc::token_wrong_var,
                      errc::token_wrong_context,
                      errc::context_already_entered,
                      errc::executor_closed,
                      errc::not_in_executor,
                      errc::invalid_argument,
                      errc::cancelled};
  CHECK(static_cast<int>(errc::lookup_failed) == 1);
  for (std::size_t i = 0; i < std::size(all); ++i) {
    CHECK(static_cast<int>(all[i]) == static_cast<int>(i) + 1);
    const std::error_code code = weft::make_error_code(all[i]);
    CHECK(code.value() == static_cast<int>(all[i]));
    CHECK_FALSE(code.message().empty());
    for (std::size_t j = 0; j < i; ++j)
      CHECK(code.message() != weft::make_error_code(all[j]).message());
  }
}

TEST_CASE("a weft error can be caught as std::system_error and compared with errc", "[error]") {
  try {
    throw weft::error(weft::errc::cancelled, "weft: cancelled");
  } catch (const std::system_error& e) {
    CHECK(e.code() == weft::errc::cancelled);
    CHECK(e.code() != weft::errc::token_used);
  }
}
