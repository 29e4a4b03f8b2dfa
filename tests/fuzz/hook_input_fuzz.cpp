// Fuzz target: everything hostlet-hook reads (hook/hook.hpp). The first byte
// chooses the reader: the XML on stdin (written by libvirtd from a guest
// definition a tenant may control), hook.conf, or the agent's answer line.
// Whatever the input, each reader returns; on success the event built from
// the XML is valid JSON with a dotted type, every PCI address has the
// dddd:bb:ss.f form and the counts agree; on failure there is a message.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "hook.hpp"

using hostlet::fuzz::check;
using namespace hostlet::hook;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > (1u << 20)) return 0;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string err;
  switch (data[0] % 3) {
    case 0: {
      Description d;
      if (!read_description(input, d, err)) {
        check(!err.empty());
        return 0;
      }
      check(d.hostdevs.size() == d.hostdev_managed.size() && d.hostdevs.size() <= kMaxHostdevs);
      for (const auto& h : d.hostdevs) check(h.size() == 12 && h[4] == ':' && h[7] == ':' && h[10] == '.');
      Invocation inv{"qemu", "vm", "prepare", "begin", "-"};
      std::string line = notification_line(inv, event_attrs(inv, d, 2048));
      check(!line.empty() && line.back() == '\n');
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      check(j.is_object() && j["type"] == "libvirt.hook.qemu.prepare");
      check(j["attrs"]["hostdev_count"] == std::to_string(d.hostdevs.size()));
      break;
    }
    case 1: {
      Config c;
      if (parse_config(input, c, err)) {
        check(c.timeout_ms > 0 && !c.socket.empty() && c.socket[0] == '/' && c.max_stdin >= 1024);
      } else {
        check(!err.empty());
      }
      break;
    }
    default: {
      Verdict v = judge(input);
      check(v.outcome == Outcome::passed || !v.message.empty());
      break;
    }
  }
  return 0;
}
