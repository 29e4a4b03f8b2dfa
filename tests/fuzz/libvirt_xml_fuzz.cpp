// Fuzz target: the libvirt plugin's reading of a domain's XML for the
// metrics' device labels (plugins/libvirt/stats.cpp, DeviceCache::parse:
// disk target/source file, interface target/source bridge). The XML comes
// from libvirtd, which a hostile guest definition can fill; whatever it holds,
// parse returns (empty on a parse error) without crashing, and every label it
// returns is a string without a NUL byte, within the input's size.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "stats.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  std::string xml(reinterpret_cast<const char*>(data), size);
  auto d = hostlet_virt::DeviceCache::parse(xml);
  for (const auto* list : {&d.disks, &d.interfaces})
    for (const auto& [a, b] : *list)
      if (a.find('\0') != std::string::npos || b.find('\0') != std::string::npos || a.size() > size ||
          b.size() > size)
        abort();
  return 0;
}
