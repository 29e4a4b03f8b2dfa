// "Did you mean": the closest known name to a mistyped one, for config keys,
// action names and log levels.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace hostlet {

// Levenshtein distance: the fewest single-byte insertions, deletions and
// substitutions that turn `a` into `b`. O(|a|·|b|) time, O(|b|) memory.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word` by edit distance when it is close enough
// (distance <= max(1, len/3)); the first of equally close ones; empty otherwise.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace hostlet
