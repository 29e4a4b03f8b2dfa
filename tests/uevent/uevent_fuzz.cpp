// libFuzzer target for the uevent parser (built with clang only):
//   CXX=clang++ meson setup build-fuzz && ninja -C build-fuzz tests/uevent/uevent_fuzz
//   build-fuzz/tests/uevent/uevent_fuzz -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hostlet::uevent::ParseLimits limits;
  limits.libudev = size > 0 && (data[0] & 1);
  auto r = hostlet::uevent::parse(std::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (r.ok() && r.event.action.empty()) __builtin_trap();
  return 0;
}
