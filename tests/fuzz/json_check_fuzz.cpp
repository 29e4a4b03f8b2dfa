// Fuzz target: core/json_check (json_valid), differential against
// nlohmann::json::accept. The input is the text to check.
//
// json_valid promises to accept exactly what nlohmann::json::accept accepts.
// They legitimately disagree in two classes, and only there:
//   1. A raw NUL byte. nlohmann reads a std::string's NUL outside a string
//      as the end of the input ("{}\0junk" is accepted); json_valid, like
//      RFC 8259, rejects every text that holds one. So for such a text
//      nlohmann's answer must equal json_valid's on the part before the
//      first NUL, and json_valid must say no.
//   2. A leading UTF-8 byte order mark. nlohmann skips one (RFC 8259 lets a
//      parser); json_valid does not, because what it checks (an action's
//      result data) is pasted into a reply line, where a BOM would be
//      invalid JSON. So nlohmann's answer must equal json_valid's on the
//      text after the BOM, and json_valid must say no.
// Neither limits depth (both are iterative), so deep nesting is no class.
// Any other disagreement traps.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "json_check.hpp"

namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

bool nlohmann_accepts(std::string_view text) { return nlohmann::json::accept(text); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool ours = hostlet::json_valid(text);
  const bool theirs = nlohmann_accepts(text);

  if (size_t nul = text.find('\0'); nul != std::string_view::npos) {  // class 1
    if (ours) __builtin_trap();
    // Before the NUL there may be a BOM too (class 2).
    std::string_view before = text.substr(0, nul);
    if (before.substr(0, kBom.size()) == kBom) before.remove_prefix(kBom.size());
    if (theirs != hostlet::json_valid(before)) __builtin_trap();
    return 0;
  }
  if (text.substr(0, kBom.size()) == kBom) {  // class 2
    if (ours) __builtin_trap();
    if (theirs != hostlet::json_valid(text.substr(kBom.size()))) __builtin_trap();
    return 0;
  }
  if (ours != theirs) __builtin_trap();
  return 0;
}
