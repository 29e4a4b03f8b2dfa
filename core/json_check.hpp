// A strict JSON validator (RFC 8259): exactly one value, surrounded by
// optional whitespace; strings must be valid UTF-8 with well-formed escapes
// (no lone surrogates). It accepts what nlohmann::json::accept accepts --
// tests/core/json_check_test.cpp compares the two on mutated inputs -- but
// in one pass with no allocation besides a nesting stack, so that checking
// an action's result data (often 100 KB and more) costs the loop thread
// little. Nesting depth is bounded only by memory (no recursion).
//
// Why not simdjson (Debian 3.0.1, fuzzed upstream), measured by
// bench/parse_bench on a 110 KB domain list: its DOM parser validates in
// 54 µs against 69 µs here, copy into padding included, but it refuses valid
// JSON that plugins may send and nlohmann accepts: integers beyond 64 bits
// ("12345678901234567890123": "Problem while parsing a number") and nesting
// past its max_depth (1024 by default). Adopting it would keep this validator
// as the fallback for those, so there would be more code to own, not less.
#pragma once

#include <string_view>

namespace hostlet {

bool json_valid(std::string_view text);

}  // namespace hostlet
