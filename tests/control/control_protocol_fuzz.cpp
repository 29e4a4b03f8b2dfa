// libFuzzer target for the control socket's request parser (built with clang only):
//   CXX=clang++ meson setup build-fuzz && ninja -C build-fuzz tests/control/control_protocol_fuzz
//   build-fuzz/tests/control/control_protocol_fuzz -max_total_time=60
// Besides crashes and hangs it checks what parse_request promises: an accepted
// request is an object, nests at most kMaxDepth levels, and has a null, string
// or integer id; a refused line always says why.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "control_protocol.hpp"

namespace {

size_t depth(const nlohmann::json& v) {
  size_t d = 0;
  if (v.is_structured())
    for (const auto& child : v) d = std::max(d, depth(child));
  return v.is_structured() ? d + 1 : 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostlet::control;
  std::string_view line(reinterpret_cast<const char*>(data), size);
  Request req;
  std::string error;
  if (!parse_request(line, req, error)) {
    if (error.empty()) __builtin_trap();
    return 0;
  }
  if (!req.body.is_object() || depth(req.body) > kMaxDepth) __builtin_trap();
  if (!req.id.is_null() && !req.id.is_string() && !req.id.is_number_integer()) __builtin_trap();
  Attrs attrs;
  if (req.attrs_arg(attrs, error))
    for (const auto& [k, v] : attrs)
      if (k.empty() || k.find('\0') != std::string::npos || v.find('\0') != std::string::npos) __builtin_trap();
  return 0;
}
