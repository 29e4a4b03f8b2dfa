// Metrics collection: one snapshot of the host's libvirt state per
// collection, made on a pool thread, kept by the plugin as its cache and
// written out by metrics.cpp on every scrape. Kept apart from the plugin so
// that tests drive it against a real libvirt without an agent.
//
// One collection = virConnectGetAllDomainStats over the active domains with
// VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT (a domain whose job is held, e.g.
// in a migration, gives what it can without waiting), plus virNodeGetInfo,
// virNodeGetCPUStats and virNodeGetMemoryStats. Two things the bulk call
// cannot give are fetched per domain:
// - the devices' labels of prometheus-libvirt-exporter (a disk's source file
//   when the driver has no block.N.path, an interface's source bridge): from
//   the domain's XML, cached per (uuid, domain id) so a running domain costs
//   one virDomainGetXMLDesc when first seen or restarted, not per scrape;
// - for a driver without the cpu-total/balloon/vcpu/block/interface groups
//   (libvirt's test driver has only "state"): virDomainGetInfo, and
//   virDomainBlockStats / virDomainInterfaceStats per device, as the
//   exporter does. A driver that has a group never takes this slow path.
#pragma once

#include <libvirt/libvirt.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace hostlet_virt {

struct BlockSample {
  std::string target, source;  // "vda", "/var/lib/libvirt/images/a.qcow2"
  bool has_io = false;
  double rd_reqs = 0, rd_bytes = 0, wr_reqs = 0, wr_bytes = 0;
  bool has_size = false;
  double capacity = 0, allocation = 0, physical = 0;
};

struct InterfaceSample {
  std::string target, bridge;  // "vnet0", "br0"
  double rx_bytes = 0, rx_pkts = 0, rx_errs = 0, rx_drop = 0;
  double tx_bytes = 0, tx_pkts = 0, tx_errs = 0, tx_drop = 0;
};

struct VcpuSample {
  unsigned index = 0;
  double state = 0;  // virVcpuState
  double time_ns = 0;
};

struct DomainSample {
  std::string name, uuid;
  int state = 0, reason = 0;
  double max_memory_kib = 0, memory_kib = 0, vcpus = 0, cpu_time_ns = 0;
  std::map<std::string, double> balloon;  // balloon.<key> without the prefix (KiB or counts)
  std::vector<VcpuSample> vcpu;
  std::vector<BlockSample> blocks;
  std::vector<InterfaceSample> interfaces;
};

struct NodeSample {
  bool has_info = false;
  virNodeInfo info{};
  std::vector<std::pair<std::string, double>> cpu_ns;      // "user", "system", ... (ns)
  std::vector<std::pair<std::string, double>> memory_kib;  // "total", "free", ... (KiB)
};

struct Snapshot {
  bool ok = false;
  std::string error;  // when !ok
  std::vector<DomainSample> domains;  // active domains
  NodeSample node;
};

// Device labels from domains' XML, shared by the collections of one
// instance (one runs at a time; the mutex only covers a late one).
class DeviceCache {
 public:
  struct Devices {
    std::vector<std::pair<std::string, std::string>> disks;       // target, source file
    std::vector<std::pair<std::string, std::string>> interfaces;  // target, source bridge
  };
  // The devices of `dom`, from its XML when not cached for its (uuid, id).
  // Pool thread. Domains not asked for in `sweep`'s generation are dropped.
  Devices get(virDomainPtr dom, const std::string& uuid);
  void sweep();

  // Parses <devices> of a domain XML. Empty on a parse error.
  static Devices parse(const std::string& xml);

 private:
  struct Entry {
    unsigned id;
    Devices devices;
    uint64_t seen;
  };
  std::mutex mu_;
  std::map<std::string, Entry> by_uuid_;
  uint64_t generation_ = 0;
};

// One collection (blocking libvirt calls). Pool thread.
Snapshot collect_snapshot(virConnectPtr conn, DeviceCache& devices);

}  // namespace hostlet_virt
