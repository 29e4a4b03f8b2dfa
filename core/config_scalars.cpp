// See config_scalars.hpp.
#include "config_scalars.hpp"

#include <charconv>
#include <cmath>
#include <iterator>
#include <limits>

namespace hostlet {

namespace {

constexpr uint64_t kMaxValue = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
char to_lower(char c) { return is_upper(c) ? static_cast<char>(c - 'A' + 'a') : c; }

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

// "<digits>[.<digits>]<unit>" with the unit one of `units` (the empty suffix,
// when listed, means a plain integer). The result must be a whole number
// and fit in int64_t.
std::optional<uint64_t> parse_scaled(std::string_view text, const Unit* units, size_t n_units) {
  size_t i = 0;
  while (i < text.size() && is_digit(text[i])) ++i;
  if (i == 0) return std::nullopt;
  std::string_view whole = text.substr(0, i);
  std::string_view frac;
  if (i < text.size() && text[i] == '.') {
    size_t j = i + 1;
    while (j < text.size() && is_digit(text[j])) ++j;
    frac = text.substr(i + 1, j - i - 1);
    if (frac.empty()) return std::nullopt;
    i = j;
  }
  const std::string_view suffix = text.substr(i);
  const Unit* unit = nullptr;
  for (size_t u = 0; u < n_units; ++u)
    if (units[u].suffix == suffix) unit = &units[u];
  if (unit == nullptr) return std::nullopt;
  if (suffix.empty() && !frac.empty()) return std::nullopt;  // a plain number is an integer

  uint64_t w = 0;
  auto [p, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), w);
  if (ec != std::errc() || p != whole.data() + whole.size()) return std::nullopt;
  uint64_t value = 0;
  if (__builtin_mul_overflow(w, unit->factor, &value)) return std::nullopt;

  while (!frac.empty() && frac.back() == '0') frac.remove_suffix(1);
  if (!frac.empty()) {
    if (frac.size() > 18) return std::nullopt;
    uint64_t f = 0;
    std::from_chars(frac.data(), frac.data() + frac.size(), f);
    uint64_t scale = 1;
    for (size_t k = 0; k < frac.size(); ++k) scale *= 10;
    uint64_t scaled = 0;
    if (__builtin_mul_overflow(f, unit->factor, &scaled)) return std::nullopt;
    if (scaled % scale != 0) return std::nullopt;  // not a whole number of base units
    if (__builtin_add_overflow(value, scaled / scale, &value)) return std::nullopt;
  }
  if (value > kMaxValue) return std::nullopt;
  return value;
}

// from_chars takes no '+': one is allowed in front of the number, but not in
// front of another sign ("+-1" is not -1).
std::optional<std::string_view> without_plus(std::string_view s) {
  if (!s.empty() && s[0] == '+') {
    s.remove_prefix(1);
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) return std::nullopt;
  }
  if (s.empty()) return std::nullopt;
  return s;
}

}  // namespace

std::optional<int64_t> parse_int(std::string_view text) {
  const auto s = without_plus(text);
  if (!s) return std::nullopt;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || p != s->data() + s->size()) return std::nullopt;
  return v;
}

std::optional<double> parse_double(std::string_view text) {
  const auto s = without_plus(text);
  if (!s) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || p != s->data() + s->size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(std::string_view text) {
  static constexpr struct {
    std::string_view yes, no;
  } kNames[] = {{"y", "n"}, {"yes", "no"}, {"true", "false"}, {"on", "off"}};
  if (text.empty() || text.size() > 5) return std::nullopt;
  const std::string_view rest = text.substr(1);
  auto all = [](std::string_view s, bool (*pred)(char)) {
    for (char c : s)
      if (!pred(c)) return false;
    return true;
  };
  const bool lower = all(text, is_lower);
  const bool upper_or_capitalized = is_upper(text[0]) && (all(rest, is_lower) || all(rest, is_upper));
  if (!lower && !upper_or_capitalized) return std::nullopt;
  char folded[5];
  for (size_t i = 0; i < text.size(); ++i) folded[i] = to_lower(text[i]);
  const std::string_view word(folded, text.size());
  for (const auto& name : kNames) {
    if (word == name.yes) return true;
    if (word == name.no) return false;
  }
  return std::nullopt;
}

std::optional<uint64_t> parse_duration_ms(std::string_view text) {
  static constexpr Unit units[] = {
      {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}};
  return parse_scaled(text, units, std::size(units));
}

std::optional<uint64_t> parse_size(std::string_view text) {
  static constexpr Unit units[] = {
      {"", 1},           {"B", 1},          {"K", 1ull << 10}, {"KiB", 1ull << 10},
      {"M", 1ull << 20}, {"MiB", 1ull << 20}, {"G", 1ull << 30}, {"GiB", 1ull << 30},
      {"T", 1ull << 40}, {"TiB", 1ull << 40}};
  return parse_scaled(text, units, std::size(units));
}

std::optional<uint64_t> parse_file_mode(std::string_view s) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) {
    s.remove_prefix(2);
    base = 8;
  } else if (s.size() > 1 && s[0] == '0') {
    base = 8;
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (s.empty() || ec == std::errc::invalid_argument || p != s.data() + s.size()) return std::nullopt;
  if (ec == std::errc::result_out_of_range) return std::numeric_limits<uint64_t>::max();
  return v;
}

std::optional<double> parse_rate_per_second(std::string_view text) {
  double per = 1;
  if (text.size() > 2 && text[text.size() - 2] == '/') {
    switch (text.back()) {
      case 's': per = 1; break;
      case 'm': per = 60; break;
      case 'h': per = 3600; break;
      default: return std::nullopt;
    }
    text.remove_suffix(2);
  }
  const auto v = parse_double(text);
  if (!v) return std::nullopt;
  return *v / per;
}

std::string format_ms(uint64_t ms) {
  if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string format_size(uint64_t n) {
  if (n != 0 && n % (1ull << 30) == 0) return std::to_string(n >> 30) + "GiB";
  if (n != 0 && n % (1ull << 20) == 0) return std::to_string(n >> 20) + "MiB";
  if (n != 0 && n % (1ull << 10) == 0) return std::to_string(n >> 10) + "KiB";
  return std::to_string(n);
}

}  // namespace hostlet
