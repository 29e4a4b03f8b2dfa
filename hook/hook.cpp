#include "hook.hpp"

#include "xml_tree.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>

namespace hostlet::hook {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// A decimal number followed by a unit from `units` (name, factor); the empty
// unit means `plain`. False on anything else or on overflow.
bool number_with_unit(std::string_view s, const std::vector<std::pair<std::string_view, uint64_t>>& units,
                      uint64_t plain, uint64_t& out) {
  size_t i = 0;
  uint64_t v = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    unsigned d = static_cast<unsigned>(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
    i++;
  }
  if (i == 0) return false;
  std::string_view unit = trim(s.substr(i));
  uint64_t factor = 0;
  if (unit.empty()) factor = plain;
  for (const auto& [name, f] : units)
    if (unit == name) factor = f;
  if (factor == 0 || (v != 0 && v > UINT64_MAX / factor)) return false;
  out = v * factor;
  return true;
}

// libvirt's scaled integers (docs: formatdomain "Memory Allocation"), in bytes.
bool libvirt_bytes(const std::string& value, const std::string& unit, uint64_t& bytes) {
  static const std::vector<std::pair<std::string_view, uint64_t>> kUnits = {
      {"b", 1}, {"bytes", 1}, {"KB", 1000}, {"k", 1024}, {"KiB", 1024},
      {"MB", 1000 * 1000}, {"M", 1ull << 20}, {"MiB", 1ull << 20},
      {"GB", 1000ull * 1000 * 1000}, {"G", 1ull << 30}, {"GiB", 1ull << 30},
      {"TB", 1000ull * 1000 * 1000 * 1000}, {"T", 1ull << 40}, {"TiB", 1ull << 40},
  };
  const std::string u = unit.empty() ? "KiB" : unit;  // both <memory> and <page> default to KiB
  uint64_t n = 0;
  if (!number_with_unit(trim(value), {}, 1, n)) return false;
  for (const auto& [name, f] : kUnits)
    if (u == name) {
      if (n != 0 && n > UINT64_MAX / f) return false;
      bytes = n * f;
      return true;
    }
  return false;
}

// One PCI address field, "0x.." hex, at most `max`.
bool pci_field(const std::string& s, unsigned max, unsigned& out) {
  if (s.size() < 3 || s.size() > 6 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return false;
  unsigned v = 0;
  for (size_t i = 2; i < s.size(); i++) {
    if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
    v = v * 16 + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(s[i])) ? s[i] - '0'
                                                                                        : (std::tolower(s[i]) - 'a' + 10));
  }
  if (v > max) return false;
  out = v;
  return true;
}

bool read_domain(xmlNode* dom, Description& out, std::string& err) {
  using namespace hostlet::xml;
  if (xmlNode* u = child(dom, "uuid")) out.uuid = std::string(trim(text(u)));
  if (xmlNode* m = child(dom, "memory")) {
    uint64_t bytes = 0;
    if (!libvirt_bytes(text(m), attr(m, "unit"), bytes)) {
      err = "domain XML: <memory> is not a size: '" + text(m).substr(0, 64) + "'";
      return false;
    }
    out.memory_kib = bytes / 1024;
  }
  if (xmlNode* mb = child(dom, "memoryBacking")) {
    if (xmlNode* hp = child(mb, "hugepages")) {
      out.hugepages = true;
      if (xmlNode* page = child(hp, "page")) {
        uint64_t bytes = 0;
        if (!libvirt_bytes(attr(page, "size"), attr(page, "unit"), bytes) || bytes < 1024) {
          err = "domain XML: <hugepages><page size> is not a page size: '" + attr(page, "size").substr(0, 64) + "'";
          return false;
        }
        out.hugepage_kib = bytes / 1024;
      }
    }
  }
  if (xmlNode* v = child(dom, "vcpu")) {
    std::string n(trim(text(v)));
    if (n.empty() || n.size() > 6 || n.find_first_not_of("0123456789") != std::string::npos) {
      err = "domain XML: <vcpu> is not a count: '" + n.substr(0, 64) + "'";
      return false;
    }
    out.vcpus = n;
    std::string cpuset = attr(v, "cpuset");
    if (cpuset.size() > 1024 || cpuset.find_first_not_of("0123456789,-^ ") != std::string::npos) {
      err = "domain XML: <vcpu cpuset> is not a CPU list";
      return false;
    }
    out.cpuset = cpuset;
  }
  xmlNode* devices = child(dom, "devices");
  if (!devices) return true;
  for (xmlNode* c = devices->children; c; c = c->next) {
    if (!named(c, "hostdev") || attr(c, "mode") != "subsystem" || attr(c, "type") != "pci") continue;
    xmlNode* src = child(c, "source");
    xmlNode* a = src ? child(src, "address") : nullptr;
    unsigned dom_n = 0, bus = 0, slot = 0, fn = 0;
    if (!a || !pci_field(attr(a, "domain"), 0xffff, dom_n) || !pci_field(attr(a, "bus"), 0xff, bus) ||
        !pci_field(attr(a, "slot"), 0x1f, slot) || !pci_field(attr(a, "function"), 7, fn)) {
      err = "domain XML: a PCI <hostdev> without a valid <source><address domain bus slot function>";
      return false;
    }
    if (out.hostdevs.size() == kMaxHostdevs) {
      err = "domain XML: more than " + std::to_string(kMaxHostdevs) + " PCI hostdevs";
      return false;
    }
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", dom_n, bus, slot, fn);
    out.hostdevs.emplace_back(buf);
    out.hostdev_managed.push_back(attr(c, "managed") == "yes");
  }
  return true;
}

}  // namespace

bool parse_config(std::string_view text, Config& out, std::string& err) {
  if (text.size() > 64 * 1024) {
    err = "longer than 64 KiB";
    return false;
  }
  std::vector<std::string> seen;
  size_t lineno = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    lineno++;
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    auto where = [&] { return "line " + std::to_string(lineno) + ": "; };
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      err = where() + "expected 'key = value'";
      return false;
    }
    std::string key(trim(line.substr(0, eq)));
    std::string_view value = trim(line.substr(eq + 1));
    for (char ch : std::string(value) + key)
      if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
        err = where() + "control character";
        return false;
      }
    for (const auto& k : seen)
      if (k == key) {
        err = where() + "'" + key + "' given twice";
        return false;
      }
    seen.push_back(key);
    uint64_t n = 0;
    if (key == "socket") {
      if (value.empty() || value.front() != '/' || value.size() >= 108) {
        err = where() + "socket must be an absolute path shorter than 108 bytes";
        return false;
      }
      out.socket = std::string(value);
    } else if (key == "timeout") {
      if (!number_with_unit(value, {{"ms", 1}, {"s", 1000}, {"m", 60000}}, 1, n) || n == 0 || n > 3600 * 1000) {
        err = where() + "timeout must be a duration between 1ms and 1h (e.g. 10s)";
        return false;
      }
      out.timeout_ms = static_cast<int64_t>(n);
    } else if (key == "on_unreachable") {
      if (value != "open" && value != "closed") {
        err = where() + "on_unreachable must be 'open' or 'closed'";
        return false;
      }
      out.fail_closed = value == "closed";
    } else if (key == "max_stdin") {
      if (!number_with_unit(value, {{"K", 1024}, {"KiB", 1024}, {"M", 1 << 20}, {"MiB", 1 << 20}}, 1, n) ||
          n < 1024 || n > 256u << 20) {
        err = where() + "max_stdin must be a size between 1KiB and 256MiB";
        return false;
      }
      out.max_stdin = static_cast<size_t>(n);
    } else {
      err = where() + "unknown key '" + key + "' (known: socket, timeout, on_unreachable, max_stdin)";
      return false;
    }
  }
  return true;
}

bool parse_invocation(const std::vector<std::string>& argv, Invocation& out, std::string& err) {
  static const char* const kObjects[] = {"qemu", "lxc", "libxl", "bhyve", "network", "daemon"};
  if (argv.empty()) {
    err = "no program name";
    return false;
  }
  const std::string& path = argv[0];
  size_t slash = path.rfind('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string dir;
  if (slash != std::string::npos && slash > 0) {
    size_t prev = path.rfind('/', slash - 1);
    dir = path.substr(prev == std::string::npos ? 0 : prev + 1, slash - (prev == std::string::npos ? 0 : prev + 1));
  }
  for (const char* o : kObjects) {
    if (base == o || dir == std::string(o) + ".d") out.object = o;
  }
  if (out.object.empty()) {
    err = "run as '" + base +
          "': install it as libvirt's hook, e.g. ln -s /usr/sbin/hostlet-hook /etc/libvirt/hooks/qemu "
          "(objects: qemu, lxc, libxl, bhyve, network, daemon)";
    return false;
  }
  if (argv.size() < 4 || argv.size() > 5) {
    err = "libvirt runs hooks as '" + out.object + " NAME OPERATION SUB_OPERATION [EXTRA]'";
    return false;
  }
  out.name = argv[1];
  out.operation = argv[2];
  out.sub_operation = argv[3];
  out.extra = argv.size() > 4 ? argv[4] : "-";
  // The operation becomes part of the event type: a dotted word, as unixsock requires.
  if (out.operation.empty() || out.operation.size() > 64 ||
      out.operation.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_") != std::string::npos) {
    err = "operation '" + out.operation.substr(0, 64) + "' is not a libvirt hook operation";
    return false;
  }
  return true;
}

bool vetoable(const std::string& op) {
  return op == "prepare" || op == "start" || op == "migrate" || op == "restore";
}

bool read_description(std::string_view xml_text, Description& out, std::string& err) {
  using namespace hostlet::xml;
  if (trim(xml_text).empty()) return true;
  std::string why;
  Doc doc = read(xml_text, "stdin.xml", &why);
  if (!doc) {
    err = "XML on stdin does not parse: " + why;
    return false;
  }
  xmlNode* root = xmlDocGetRootElement(doc.get());
  if (root && named(root, "hookData")) {
    xmlNode* inner = child(root, "domain");
    if (!inner) inner = child(root, "network");
    root = inner;
    if (!root) return true;  // e.g. a network port event: nothing this hook reads
  }
  if (root && named(root, "domain")) return read_domain(root, out, err);
  if (root && named(root, "network")) {
    if (xmlNode* u = child(root, "uuid")) out.uuid = std::string(trim(text(u)));
    return true;
  }
  err = "XML on stdin is not a <domain>, <network> or <hookData>";
  return false;
}

Attrs event_attrs(const Invocation& inv, const Description& d, uint64_t default_hugepage_kib) {
  Attrs a;
  a.emplace_back("object", inv.object);
  if (inv.object == "network") a.emplace_back("network", inv.name);
  else if (inv.object != "daemon") a.emplace_back("domain", inv.name);
  a.emplace_back("operation", inv.operation);
  a.emplace_back("sub_operation", inv.sub_operation);
  a.emplace_back("extra", inv.extra);
  if (!d.uuid.empty()) a.emplace_back("uuid", d.uuid);
  if (!d.hostdevs.empty()) {
    std::string all;
    for (const auto& h : d.hostdevs) all += (all.empty() ? "" : " ") + h;
    a.emplace_back("hostdevs", all);
  }
  a.emplace_back("hostdev_count", std::to_string(d.hostdevs.size()));
  for (size_t i = 0; i < d.hostdevs.size(); i++) {
    a.emplace_back("hostdev." + std::to_string(i), d.hostdevs[i]);
    a.emplace_back("hostdev." + std::to_string(i) + ".managed", d.hostdev_managed[i] ? "yes" : "no");
  }
  if (d.memory_kib) a.emplace_back("memory_kib", std::to_string(d.memory_kib));
  if (d.hugepages) {
    uint64_t page = d.hugepage_kib ? d.hugepage_kib : default_hugepage_kib;
    if (page) {
      a.emplace_back("hugepage_kib", std::to_string(page));
      a.emplace_back("hugepages", std::to_string((d.memory_kib + page - 1) / page));
    }
  }
  if (!d.vcpus.empty()) a.emplace_back("vcpus", d.vcpus);
  if (!d.cpuset.empty()) a.emplace_back("cpuset", d.cpuset);
  return a;
}

std::string event_type(const Invocation& inv) { return "libvirt.hook." + inv.object + "." + inv.operation; }

std::string notification_line(const Invocation& inv, const Attrs& attrs) {
  nlohmann::json attrs_json = nlohmann::json::object();
  for (const auto& [k, v] : attrs) attrs_json[k] = v;
  nlohmann::json line = {{"type", event_type(inv)}, {"attrs", attrs_json}, {"id", 1}, {"ack", "done"}};
  // A domain name is the user's; replace rather than refuse bytes that are not UTF-8.
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Verdict judge(std::string_view reply_line) {
  Verdict v;
  nlohmann::json r = nlohmann::json::parse(reply_line, nullptr, false);
  if (!r.is_object() || !r.contains("ok") || !r["ok"].is_boolean()) {
    v.message = "the agent's answer is not a notification reply";
    return v;
  }
  if (r["ok"].get<bool>()) {
    v.outcome = Outcome::passed;
    return v;
  }
  auto results = r.find("results");
  if (results == r.end() || !results->is_array()) {
    auto e = r.find("error");
    v.message = "the agent refused the notification: " +
                (e != r.end() && e->is_string() ? e->get<std::string>() : std::string("no reason given"));
    return v;
  }
  v.outcome = Outcome::action_failed;
  for (const auto& res : *results) {
    // Only an explicit "ok": true passes; a result whose "ok" is missing or
    // not a boolean is malformed and counts as failed (value() would throw).
    if (!res.is_object()) continue;
    auto ok = res.find("ok");
    if (ok != res.end() && ok->is_boolean() && ok->get<bool>()) continue;
    std::string action = res.contains("action") && res["action"].is_string() ? res["action"].get<std::string>() : "?";
    std::string rule = res.contains("rule") && res["rule"].is_string() ? res["rule"].get<std::string>() : "";
    std::string error = res.contains("error") && res["error"].is_string() ? res["error"].get<std::string>() : "failed";
    v.message = action + ": " + error + (rule.empty() ? "" : " (rule " + rule + ")");
    return v;
  }
  v.message = "a rule's action failed";
  return v;
}

uint64_t meminfo_hugepage_kib(std::string_view meminfo) {
  constexpr std::string_view kKey = "Hugepagesize:";
  size_t at = meminfo.find(kKey);
  if (at == std::string_view::npos) return 0;
  std::string_view rest = trim(meminfo.substr(at + kKey.size(), meminfo.find('\n', at) - at - kKey.size()));
  uint64_t kib = 0;
  return number_with_unit(rest, {{"kB", 1}}, 1, kib) ? kib : 0;
}

}  // namespace hostlet::hook
