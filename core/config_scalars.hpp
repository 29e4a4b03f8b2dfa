// What the text of one YAML scalar means as a number, a boolean, a duration,
// a size or a rate. Text only: the callers (config_node.hpp) know the node,
// what was expected and where, and word the error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hostlet {

// Decimal with one optional sign, nothing else ("+5", "-3"; not "5 ", "0x10", "+-5").
std::optional<int64_t> parse_int(std::string_view text);
// A finite decimal number with an optional sign ("1.5", "-2", "1e3"; not "inf", "nan").
std::optional<double> parse_double(std::string_view text);
// YAML 1.1's booleans as yaml-cpp reads them: true/false, yes/no, on/off, y/n,
// each in lower case, UPPER case or Capitalized.
std::optional<bool> parse_bool(std::string_view text);
// "250ms", "5s", "2m", "1h", "1.5s", or a plain integer of milliseconds.
std::optional<uint64_t> parse_duration_ms(std::string_view text);
// "512", "64KiB", "64K", "1MiB", "1M", "2GiB", "2G" (powers of 1024); plain = bytes.
std::optional<uint64_t> parse_size(std::string_view text);
// A file mode: "0600" and "0o600" are octal, digits without a leading 0 are
// decimal (YAML keeps an unquoted 0600 as the text "0600"). Returns the
// number, UINT64_MAX when it does not fit in 64 bits (out of every range);
// the caller checks its range (0777 for a socket, 07777 with setuid bits).
std::optional<uint64_t> parse_file_mode(std::string_view text);
// Firings per second: "10" or "0.5" (per second), "10/s", "30/m", "100/h".
// Any sign passes here; the caller decides what a rate <= 0 means.
std::optional<double> parse_rate_per_second(std::string_view text);

// The shortest exact spelling in the units above: 3600000 -> "1h", 1500 -> "1500ms".
std::string format_ms(uint64_t ms);
// 1048576 -> "1MiB", 1536 -> "1536".
std::string format_size(uint64_t bytes);

}  // namespace hostlet
