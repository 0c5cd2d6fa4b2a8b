// w3c.cpp: W3C Trace Context Level 1 and W3C Baggage, parsed strictly and without throwing.
#include <weft/w3c.hpp>

#include <algorithm>
#include <ostream>
#include <random>

#include <weft/error.hpp>

namespace weft::w3c {

context_var<trace_context> trace("w3c.trace");
context_var<baggage_list> baggage("w3c.baggage");

namespace {

bool is_ows(char c) noexcept {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back()))
    s.remove_suffix(1);
  return s;
}

// each_member() calls f(member) for every ','-separated member of a list header, with the
// spaces and tabs around it trimmed; it stops, returning false, as soon as f returns false.
template <class F>
bool each_member(std::string_view list, F f) {
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t end = list.find(',', start);
    if (end == std::string_view::npos) end = list.size();
    if (!f(trim(list.substr(start, end - start)))) return false;
    start = end + 1;
  }
  return true;
}

// hex_lc() is the value of a lowercase hex digit, or -1 (uppercase is not allowed).
int hex_lc(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int hex_any(char c) noexcept {
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return hex_lc(c);
}

// read_hex() decodes 2 * out.size() lowercase hex digits from s at `at`.
template <std::size_t N>
bool read_hex(std::string_view s, std::size_t at, std::array<std::uint8_t, N>& out) noexcept {
  bool nonzero = false;
  for (std::size_t i = 0; i < N; ++i) {
    const int hi = hex_lc(s[at + 2 * i]);
    const int lo = hex_lc(s[at + 2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    nonzero = nonzero || out[i] != 0;
  }
  return nonzero;  // all-zero ids are invalid
}

void write_hex(std::string& out, const std::uint8_t* bytes, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[bytes[i] >> 4]);
    out.push_back(digits[bytes[i] & 15]);
  }
}

template <std::size_t N>
void fill_random(std::array<std::uint8_t, N>& out) {
  // A generator per thread, seeded once: ids must be unpredictable enough not to collide,
  // and cheap (one per outgoing call).
  thread_local std::mt19937_64 engine{[] {
    std::random_device seed;
    return (std::uint64_t{seed()} << 32) ^ seed();
  }()};
  do {
    for (std::size_t i = 0; i < N; i += 8) {
      std::uint64_t r = engine();
      for (std::size_t k = i; k < std::min(N, i + 8); ++k, r >>= 8)
        out[k] = static_cast<std::uint8_t>(r);
    }
  } while (std::all_of(out.begin(), out.end(), [](std::uint8_t b) { return b == 0; }));
}

// ---- tracestate grammar ----

bool is_key_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' ||
         c == '/';
}

bool is_lcalpha(char c) noexcept {
  return c >= 'a' && c <= 'z';
}

bool key_part(std::string_view s, std::size_t max, bool digit_first) noexcept {
  if (s.empty() || s.size() > max) return false;
  const char first = s.front();
  if (!(is_lcalpha(first) || (digit_first && first >= '0' && first <= '9'))) return false;
  return std::all_of(s.begin() + 1, s.end(), is_key_char);
}

// ---- baggage grammar ----

// RFC 7230 tchar.
bool is_tchar(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool is_token(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// baggage-octet: printable ASCII except space, '"', ',', ';' and '\'.
bool is_baggage_octet(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x21 && u <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
}

// percent_decode() appends the decoded value; false if it is not baggage-octets or holds a
// '%' not followed by two hex digits.
bool percent_decode(std::string_view v, std::string& out) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (!is_baggage_octet(c)) return false;
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    if (i + 2 >= v.size()) return false;  // '%' needs two hex digits after it
    const int hi = hex_any(v[i + 1]);
    const int lo = hex_any(v[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi << 4 | lo));
    i += 2;
  }
  return true;
}

// utf8_length() is the length of the well-formed UTF-8 sequence at the start of s, or, when
// there is none, the length of its maximal invalid part: 1 for a byte that starts no sequence,
// else the lead byte and the continuation bytes that fit it before the sequence breaks off
// (Unicode 15, section 3.9, "U+FFFD Substitution of Maximal Subparts"). `valid` says which.
std::size_t utf8_length(std::string_view s, bool& valid) noexcept {
  const auto lead = static_cast<unsigned char>(s[0]);
  valid = true;
  if (lead < 0x80) return 1;
  std::size_t size = 0;
  unsigned char low = 0x80, high = 0xbf;  // the range of the second byte (Table 3-7)
  if (lead >= 0xc2 && lead <= 0xdf) {
    size = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    size = 3;
    if (lead == 0xe0) low = 0xa0;   // no overlong forms
    if (lead == 0xed) high = 0x9f;  // no surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    size = 4;
    if (lead == 0xf0) low = 0x90;   // no overlong forms
    if (lead == 0xf4) high = 0x8f;  // nothing past U+10FFFF
  } else {
    valid = false;  // a continuation byte, C0, C1 or F5..FF: never a lead
    return 1;
  }
  for (std::size_t i = 1; i < size; ++i) {
    const auto c = i < s.size() ? static_cast<unsigned char>(s[i]) : 0;
    if (c < low || c > high) {
      valid = false;
      return i;
    }
    low = 0x80;
    high = 0xbf;
  }
  return size;
}

// replace_invalid_utf8() replaces every maximal invalid part of s with U+FFFD, as the
// Baggage specification asks of percent-decoded values.
void replace_invalid_utf8(std::string& s) {
  if (std::all_of(s.begin(), s.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
    return;
  }
  std::string out;
  out.reserve(s.size());
  const std::string_view in = s;
  for (std::size_t i = 0; i < in.size();) {
    bool valid = false;
    const std::size_t n = utf8_length(in.substr(i), valid);
    if (valid) {
      out.append(in.substr(i, n));
    } else {
      out.append("\xef\xbf\xbd");
    }
    i += n;
  }
  s = std::move(out);
}

void percent_encode(std::string_view v, std::string& out) {
  static constexpr char digits[] = "0123456789ABCDEF";
  for (char c : v) {
    if (is_baggage_octet(c) && c != '%') {
      out.push_back(c);
    } else {
      const auto u = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(digits[u >> 4]);
      out.push_back(digits[u & 15]);
    }
  }
}

// split_key_value() splits `key OWS "=" OWS value` (value may be empty).
bool split_key_value(std::string_view s, std::string_view& key, std::string_view& value) noexcept {
  const std::size_t eq = s.find('=');
  if (eq == std::string_view::npos) return false;
  key = trim(s.substr(0, eq));
  value = trim(s.substr(eq + 1));
  return is_token(key);
}

}  // namespace

// ---- traceparent -----------------------------------------------------------------------

std::optional<traceparent> traceparent::parse(std::string_view header) noexcept {
  const std::string_view h = trim(header);
  // version "-" trace-id "-" parent-id "-" trace-flags: 2 + 1 + 32 + 1 + 16 + 1 + 2.
  constexpr std::size_t v00_size = 55;
  if (h.size() < v00_size) return std::nullopt;
  const int v_hi = hex_lc(h[0]), v_lo = hex_lc(h[1]);
  if (v_hi < 0 || v_lo < 0) return std::nullopt;
  const int version = v_hi << 4 | v_lo;
  if (version == 0xff) return std::nullopt;  // forbidden
  if (version == 0 && h.size() != v00_size) return std::nullopt;
  // A later version may add fields after a '-'; what follows is not ours to check.
  if (version != 0 && h.size() > v00_size && h[v00_size] != '-') return std::nullopt;
  if (h[2] != '-' || h[35] != '-' || h[52] != '-') return std::nullopt;
  traceparent t;
  if (!read_hex(h, 3, t.trace_id) || !read_hex(h, 36, t.parent_id)) return std::nullopt;
  const int f_hi = hex_lc(h[53]), f_lo = hex_lc(h[54]);
  if (f_hi < 0 || f_lo < 0) return std::nullopt;
  t.flags = static_cast<std::uint8_t>(f_hi << 4 | f_lo);
  // Of a later version's flags only "sampled" has a meaning we know.
  if (version != 0) t.flags &= 1;
  return t;
}

std::string traceparent::to_string() const {
  std::string out;
  out.reserve(55);
  out += "00-";
  write_hex(out, trace_id.data(), trace_id.size());
  out += '-';
  write_hex(out, parent_id.data(), parent_id.size());
  out += '-';
  write_hex(out, &flags, 1);
  return out;
}

traceparent traceparent::random(bool sampled) {
  traceparent t;
  fill_random(t.trace_id);
  fill_random(t.parent_id);
  t.flags = sampled ? 1 : 0;
  return t;
}

traceparent traceparent::child() const {
  traceparent t = *this;
  do {
    fill_random(t.parent_id);
  } while (t.parent_id == parent_id);
  return t;
}

// ---- tracestate ------------------------------------------------------------------------

bool is_tracestate_key(std::string_view key) noexcept {
  const std::size_t at = key.find('@');
  if (at == std::string_view::npos) return key_part(key, 256, false);
  return key_part(key.substr(0, at), 241, true) && key_part(key.substr(at + 1), 14, false);
}

bool is_tracestate_value(std::string_view value) noexcept {
  if (value.empty() || value.size() > 256 || value.back() == ' ') return false;
  return std::all_of(value.begin(), value.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u <= 0x7e && c != ',' && c != '=';
  });
}

std::optional<tracestate> tracestate::parse(std::string_view header) {
  tracestate t;
  const bool valid = each_member(header, [&t](std::string_view member) {
    if (member.empty()) return true;  // allowed, and skipped
    const std::size_t eq = member.find('=');
    if (eq == std::string_view::npos) return false;
    const std::string_view key = member.substr(0, eq);
    const std::string_view value = member.substr(eq + 1);
    if (!is_tracestate_key(key) || !is_tracestate_value(value)) return false;
    if (t.members.size() == max_members) return false;
    for (const auto& m : t.members) {
      if (m.first == key) return false;  // a key may appear once
    }
    t.members.emplace_back(key, value);
    return true;
  });
  if (!valid) return std::nullopt;
  return t;
}

std::string tracestate::to_string() const {
  std::string out;
  for (const auto& [key, value] : members) {
    if (!out.empty()) out += ',';
    out += key;
    out += '=';
    out += value;
  }
  return out;
}

// ---- baggage ---------------------------------------------------------------------------

std::optional<std::vector<std::pair<std::string, std::string>>> parse_baggage(
    std::string_view header) {
  if (header.size() > baggage_max_bytes) return std::nullopt;
  std::vector<std::pair<std::string, std::string>> entries;
  if (trim(header).empty()) return entries;  // no baggage (what format_baggage({}) writes)
  const bool valid = each_member(header, [&entries](std::string_view member) {
    if (entries.size() == baggage_max_members) return false;
    // key OWS "=" OWS value *( OWS ";" OWS property )
    std::size_t semi = member.find(';');
    std::string_view key, value;
    if (!split_key_value(member.substr(0, semi), key, value)) return false;
    std::string decoded;
    if (!percent_decode(value, decoded)) return false;
    replace_invalid_utf8(decoded);
    while (semi != std::string_view::npos) {
      const std::size_t next = member.find(';', semi + 1);
      const std::string_view property = trim(member.substr(semi + 1, next - semi - 1));
      std::string_view pkey, pvalue;
      std::string ignored;
      const bool valid_property =
          property.find('=') == std::string_view::npos
              ? is_token(property)
              : split_key_value(property, pkey, pvalue) && percent_decode(pvalue, ignored);
      if (!valid_property) return false;
      semi = next;
    }
    entries.emplace_back(std::string(key), std::move(decoded));
    return true;
  });
  if (!valid) return std::nullopt;
  return entries;
}

std::string format_baggage(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out;
  std::size_t members = 0;
  std::string piece;
  for (const auto& [key, value] : entries) {
    if (!is_token(key)) {
      throw error(errc::invalid_argument,
                  "weft: format_baggage: key '" + key + "' is not an RFC 7230 token");
    }
    piece.assign(key);
    piece += '=';
    percent_encode(value, piece);
    const std::size_t grown = out.size() + (out.empty() ? 0 : 1) + piece.size();
    if (members == baggage_max_members || grown > baggage_max_bytes) continue;  // whole or not
    if (!out.empty()) out += ',';
    out += piece;
    ++members;
  }
  return out;
}

const std::string* baggage_list::find(std::string_view key) const noexcept {
  for (const auto& [k, v] : entries) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::ostream& operator<<(std::ostream& out, const baggage_list& b) {
  bool first = true;
  for (const auto& [k, v] : b.entries) {
    out << (first ? "" : ",") << k << '=' << v;
    first = false;
  }
  return out;
}

std::ostream& operator<<(std::ostream& out, const trace_context& t) {
  out << t.parent.to_string();
  if (!t.state.members.empty()) out << ';' << t.state.to_string();
  return out;
}

detail::scoped_binding<trace_context> start_span() {
  const trace_context* current = trace.try_get();
  return trace.scoped(current != nullptr ? trace_context{current->parent.child(), current->state}
                                         : trace_context{traceparent::random(true), {}});
}

}  // namespace weft::w3c
