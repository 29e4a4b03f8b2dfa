// hostlet-hook's logic without I/O: what libvirtd's arguments and stdin say,
// the configuration file, the notification line sent to the agent and the
// verdict read from its answer. main.cpp does the reading and the socket;
// everything here is pure so that tests and the fuzz target drive it.
//
// libvirtd runs a hook as `/etc/libvirt/hooks/<object> NAME OPERATION
// SUB_OPERATION EXTRA` (or any executable in `/etc/libvirt/hooks/<object>.d/`)
// with an XML description on stdin, synchronously: the VM waits until the
// hook exits, and a non-zero exit of some operations stops them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hostlet::hook {

// Where the agent listens (the unixsock instance's socket); outside tests
// rely on the name and the default.
inline constexpr const char* kSocketEnv = "HOSTLET_NOTIFY_SOCKET";
inline constexpr const char* kDefaultSocket = "/run/hostlet/notify.sock";
// The configuration file; HOSTLET_HOOK_CONFIG names another one.
inline constexpr const char* kConfigEnv = "HOSTLET_HOOK_CONFIG";
inline constexpr const char* kDefaultConfig = "/etc/hostlet/hook.conf";

struct Config {
  std::string socket = kDefaultSocket;
  int64_t timeout_ms = 10000;         // the whole exchange with the agent
  bool fail_closed = false;           // agent unreachable or late: veto instead of letting it pass
  size_t max_stdin = 4 * 1024 * 1024; // bytes of XML read from libvirtd
  size_t max_reply = 16 * 1024 * 1024;
};

// Reads `key = value` lines ('#' starts a comment): socket, timeout (ms, s, m
// suffixes; a plain number is ms), on_unreachable (open | closed), max_stdin
// (bytes, K/KiB, M/MiB). An unknown key, a bad value or a repeated key is an
// error naming the line. `text` longer than 64 KiB is refused.
bool parse_config(std::string_view text, Config& out, std::string& err);

// What libvirtd's command line says.
struct Invocation {
  std::string object;  // qemu, lxc, libxl, bhyve, network, daemon
  std::string name;    // argv[1]: the domain or network name ("-" for daemon)
  std::string operation, sub_operation, extra;
};

// The object is the program's name (`qemu`), or its directory's without
// ".d" (`qemu.d/10-hostlet`). False with `err` for anything else or a wrong
// number of arguments.
bool parse_invocation(const std::vector<std::string>& argv, Invocation& out, std::string& err);

// True for the operations whose failure libvirt lets stop the VM (and that
// the issue lists): prepare, start, migrate, restore.
bool vetoable(const std::string& operation);

// The fields read from the XML on stdin (a <domain>, a <network>, or
// libvirt's <hookData> wrapping them).
struct Description {
  std::string uuid;
  std::vector<std::string> hostdevs;  // PCI addresses "dddd:bb:ss.f" of <hostdev type='pci'>
  std::vector<bool> hostdev_managed;  // managed='yes': libvirt binds it to vfio itself
  uint64_t memory_kib = 0;            // <memory>, in KiB (0: absent)
  bool hugepages = false;             // <memoryBacking><hugepages>
  uint64_t hugepage_kib = 0;          // its first <page size>, 0: the host's default
  std::string vcpus;                  // <vcpu> (maximum), digits only
  std::string cpuset;                 // <vcpu cpuset='...'>
};

// The most hostdevs one description may list.
inline constexpr size_t kMaxHostdevs = 256;

// Parses `xml` (empty: nothing to read, true). False with `err` on XML that
// does not parse, a root other than domain/network/hookData, or a value out
// of range (a PCI address field, a size that overflows).
bool read_description(std::string_view xml, Description& out, std::string& err);

// The event's attributes, in order: object, the name under "domain" or
// "network", operation, sub_operation, extra, uuid, then from the XML:
// hostdevs (space-separated), hostdev_count, hostdev.N and hostdev.N.managed,
// memory_kib, hugepage_kib and hugepages (pages needed for memory_kib) when
// hugepages are used, vcpus, cpuset. `default_hugepage_kib` stands in for a
// <hugepages/> without a page size (the host's Hugepagesize).
using Attrs = std::vector<std::pair<std::string, std::string>>;
Attrs event_attrs(const Invocation& inv, const Description& d, uint64_t default_hugepage_kib);

// "libvirt.hook.<object>.<operation>"
std::string event_type(const Invocation& inv);

// The notification line (with '\n'): {"type", "attrs", "id": 1, "ack": "done"}.
std::string notification_line(const Invocation& inv, const Attrs& attrs);

// What to do with the agent's answer line.
enum class Outcome {
  passed,       // every action answered ok (or none ran)
  action_failed,  // a rule's action failed: `message` names it and quotes the error
  agent_error,    // the agent refused the line (queue full, a limit): not a rule's verdict
};
struct Verdict {
  Outcome outcome = Outcome::agent_error;
  std::string message;
};
Verdict judge(std::string_view reply_line);

// Hugepagesize from /proc/meminfo's text, in KiB (0 when absent).
uint64_t meminfo_hugepage_kib(std::string_view meminfo);

}  // namespace hostlet::hook
