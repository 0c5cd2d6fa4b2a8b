// weft/w3c.hpp: the W3C wire formats a request's trace and baggage travel in between
// processes -- Trace Context Level 1 (traceparent, tracestate) and Baggage -- and the
// context_vars that carry them inside a process.
//
// Parsers take what arrives from the network: malformed input never throws, it is nullopt
// (a header to ignore), and nothing is allocated beyond the limits of the specifications.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <weft/context_var.hpp>

namespace weft::w3c {

// traceparent is the `traceparent` header: which trace a request belongs to and the span
// (parent-id) of the caller.
struct traceparent {
  std::array<std::uint8_t, 16> trace_id{};
  std::array<std::uint8_t, 8> parent_id{};
  std::uint8_t flags = 0;

  // parse() implements every rule of Trace Context Level 1: surrounding spaces and tabs are
  // ignored; the version is two lowercase hex digits and not "ff"; version 00 is exactly
  // "00-<32 hex>-<16 hex>-<2 hex>"; a later version is parsed the same way, may carry more
  // after a '-' (ignored), and only its sampled flag is kept; hex is lowercase only; an
  // all-zero trace-id or parent-id is invalid. nullopt for anything else.
  static std::optional<traceparent> parse(std::string_view header) noexcept;
  // to_string() is "00-<32 hex>-<16 hex>-<2 hex>", lowercase.
  std::string to_string() const;
  bool sampled() const noexcept { return (flags & 1) != 0; }

  // random() is a new trace: a random trace-id and parent-id, `sampled` as asked.
  static traceparent random(bool sampled = true);
  // child() is this trace with a new random parent-id: the span of work that follows (an
  // outgoing call), whose callee sees it as its parent.
  traceparent child() const;

  friend bool operator==(const traceparent&, const traceparent&) = default;
};

// tracestate is the `tracestate` header: vendor key=value pairs, at most 32, left first.
struct tracestate {
  static constexpr std::size_t max_members = 32;
  std::vector<std::pair<std::string, std::string>> members;

  // parse() checks the Level 1 grammar: list-members separated by ',' with optional spaces
  // and tabs around them, empty members skipped; keys `lcalpha *(lcalpha/digit/_-*/)` up to
  // 256 characters or `tenant@system` (tenant up to 241, system up to 14); values 1 to 256
  // printable ASCII characters except ',' and '=', not ending in a space. A header with a bad
  // member, a duplicated key or more than 32 members is discarded whole: nullopt.
  static std::optional<tracestate> parse(std::string_view header);
  // to_string() joins the members with ','.
  std::string to_string() const;

  friend bool operator==(const tracestate&, const tracestate&) = default;
};

// is_tracestate_key() / is_tracestate_value() are the grammar parse() checks.
bool is_tracestate_key(std::string_view key) noexcept;
bool is_tracestate_value(std::string_view value) noexcept;

// Baggage: application-defined key=value pairs that travel with a request.
inline constexpr std::size_t baggage_max_members = 180;
inline constexpr std::size_t baggage_max_bytes = 8192;

// parse_baggage() reads a `baggage` header: list-members `key=value` separated by ',' with
// optional spaces and tabs, each with optional `;property` parts (checked, then dropped);
// keys are RFC 7230 tokens; values are percent-decoded, and decoded bytes that are not
// UTF-8 are replaced with U+FFFD, one for each maximal invalid part (as the specification
// asks), so every value is valid UTF-8. An empty or all-whitespace header is the empty list.
// nullopt for a malformed header (an empty member included), one longer than 8192 bytes, or
// one with more than 180 members.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_baggage(
    std::string_view header);
// format_baggage() writes entries as a `baggage` header, values percent-encoded (every
// byte outside the unreserved baggage octets, and '%'), byte for byte: a value that is not
// UTF-8 reaches the receiver with U+FFFD in place of its invalid parts. No entries: "".
//
// Limits: the header never exceeds 180 members or 8192 bytes, the most a receiver must
// accept. An entry that would take it past either is left out -- whole, never cut -- and the
// entries after it are still written if they fit; nothing reports what was left out, so
// parse_baggage(format_baggage(e)) == e holds only for entries within the limits. (Check
// the size of what you bind if losing entries matters.) A key that is not a token throws
// weft::error(invalid_argument) naming it.
std::string format_baggage(const std::vector<std::pair<std::string, std::string>>& entries);

// trace_context is what a process knows of the trace a request belongs to.
struct trace_context {
  traceparent parent;
  tracestate state;
  friend bool operator==(const trace_context&, const trace_context&) = default;
};
std::ostream& operator<<(std::ostream& out, const trace_context& t);

// baggage_list is the baggage of a request, in header order.
struct baggage_list {
  std::vector<std::pair<std::string, std::string>> entries;
  // find() is the value of key, or nullptr.
  const std::string* find(std::string_view key) const noexcept;
  friend bool operator==(const baggage_list&, const baggage_list&) = default;
};
std::ostream& operator<<(std::ostream& out, const baggage_list& b);

// trace holds the current trace (propagator::add_trace_context() carries it as traceparent
// and tracestate); baggage holds the current baggage (propagator::add_baggage()).
extern context_var<trace_context> trace;
extern context_var<baggage_list> baggage;

// start_span() binds, until the returned guard goes, a trace context whose parent-id is new:
// the span of the work that follows, such as an outgoing call (its callee then sees this
// span as its parent). Trace-id, flags and tracestate are kept; with no trace bound it starts
// a new, sampled trace.
[[nodiscard]] detail::scoped_binding<trace_context> start_span();

}  // namespace weft::w3c
