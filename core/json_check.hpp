// A strict JSON validator (RFC 8259): exactly one value, surrounded by
// optional whitespace; strings must be valid UTF-8 with well-formed escapes
// (no lone surrogates). It accepts what nlohmann::json::accept accepts --
// tests/core/json_check_test.cpp compares the two on mutated inputs -- but
// in one pass with no allocation besides a nesting stack, so that checking
// an action's result data (often 100 KB and more) costs the loop thread
// little. Nesting depth is bounded only by memory (no recursion).
#pragma once

#include <string_view>

namespace hostlet {

bool json_valid(std::string_view text);

}  // namespace hostlet
