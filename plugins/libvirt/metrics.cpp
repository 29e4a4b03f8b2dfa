#include "metrics.hpp"

#include <string>

namespace hostlet_virt {
namespace {

constexpr hostlet_metric_type kCounter = HOSTLET_METRIC_COUNTER;
constexpr hostlet_metric_type kGauge = HOSTLET_METRIC_GAUGE;

// Labels of one sample; values outlive the call.
struct Labels {
  hostlet_attr a[5];
  size_t n = 0;
  Labels& add(const char* k, const std::string& v) {
    a[n++] = {k, v.c_str()};
    return *this;
  }
};

// The exporter's label order (alphabetical).
Labels domain_labels(const DomainSample& d) { return Labels().add("domain", d.name).add("uuid", d.uuid); }
Labels block_labels(const DomainSample& d, const BlockSample& b) {
  return Labels().add("domain", d.name).add("source_file", b.source).add("target_device", b.target).add("uuid", d.uuid);
}
Labels interface_labels(const DomainSample& d, const InterfaceSample& i) {
  return Labels().add("domain", d.name).add("source_bridge", i.bridge).add("target_device", i.target).add("uuid", d.uuid);
}

using Writer = void (*)(const MetricsView&, MetricsOut&);

struct Family {
  FamilyInfo info;
  const char* unit;
  Writer write;
};

void put(MetricsOut& out, const Labels& l, double v) { out.sample(l.a, l.n, v); }
void put(MetricsOut& out, double v) { out.sample(nullptr, 0, v); }

template <class F> void each_domain(const MetricsView& v, MetricsOut& out, F&& f) {
  for (const CachedDomain& d : v.domains) f(*d.sample, out);
}

template <double BlockSample::*Field, bool BlockSample::*Has> void block_family(const MetricsView& v, MetricsOut& out) {
  each_domain(v, out, [](const DomainSample& d, MetricsOut& o) {
    for (const BlockSample& b : d.blocks)
      if (b.*Has) put(o, block_labels(d, b), b.*Field);
  });
}

template <double InterfaceSample::*Field> void interface_family(const MetricsView& v, MetricsOut& out) {
  each_domain(v, out, [](const DomainSample& d, MetricsOut& o) {
    for (const InterfaceSample& i : d.interfaces) put(o, interface_labels(d, i), i.*Field);
  });
}

// A domain value times a scale (KiB -> bytes, ns -> s).
template <double DomainSample::*Field, int Mul, int Div = 1> void domain_family(const MetricsView& v, MetricsOut& out) {
  each_domain(v, out, [](const DomainSample& d, MetricsOut& o) { put(o, domain_labels(d), d.*Field * Mul / Div); });
}
template <double DomainSample::*Field> void domain_ns_family(const MetricsView& v, MetricsOut& out) {
  each_domain(v, out, [](const DomainSample& d, MetricsOut& o) { put(o, domain_labels(d), d.*Field / 1e9); });
}

void state_code(const MetricsView& v, MetricsOut& out) {
  each_domain(v, out, [](const DomainSample& d, MetricsOut& o) { put(o, domain_labels(d), d.state); });
}
void state_reason(const MetricsView& v, MetricsOut& out) {
  each_domain(v, out, [](const DomainSample& d, MetricsOut& o) { put(o, domain_labels(d), d.reason); });
}
void domains_number(const MetricsView& v, MetricsOut& out) {
  if (v.have_data) put(out, static_cast<double>(v.domains.size()));
}
void up(const MetricsView& v, MetricsOut& out) { put(out, v.connected ? 1 : 0); }

// balloon.<key>: KiB values as bytes, the rest as they come.
void balloon(const MetricsView& v, MetricsOut& out, const char* key, bool kib) {
  each_domain(v, out, [&](const DomainSample& d, MetricsOut& o) {
    auto it = d.balloon.find(key);
    if (it != d.balloon.end()) put(o, domain_labels(d), kib ? it->second * 1024 : it->second);
  });
}
#define BALLOON(KEY, KIB) [](const MetricsView& v, MetricsOut& o) { balloon(v, o, KEY, KIB); }

// One sample per vCPU, labelled vcpu="N"; Div turns ns into seconds.
template <double VcpuSample::*Field, int Div> void vcpu_family(const MetricsView& v, MetricsOut& out) {
  each_domain(v, out, [](const DomainSample& d, MetricsOut& o) {
    for (const VcpuSample& c : d.vcpu) {
      const std::string idx = std::to_string(c.index);
      put(o, domain_labels(d).add("vcpu", idx), c.*Field / Div);
    }
  });
}

void node_cpus(const MetricsView& v, MetricsOut& out) {
  if (v.node && v.node->has_info) put(out, v.node->info.cpus);
}
void node_mhz(const MetricsView& v, MetricsOut& out) {
  if (v.node && v.node->has_info) put(out, v.node->info.mhz);
}
void node_memory(const MetricsView& v, MetricsOut& out) {
  if (v.node && v.node->has_info) put(out, static_cast<double>(v.node->info.memory) * 1024);
}
void node_cpu_time(const MetricsView& v, MetricsOut& out) {
  if (!v.node) return;
  for (auto& [mode, ns] : v.node->cpu_ns) put(out, Labels().add("mode", mode), ns / 1e9);
}
void node_memory_stats(const MetricsView& v, MetricsOut& out) {
  if (!v.node) return;
  for (auto& [kind, kib] : v.node->memory_kib) put(out, Labels().add("kind", kind), kib * 1024);
}

void stale(const MetricsView& v, MetricsOut& out) {
  for (const CachedDomain& d : v.domains) put(out, domain_labels(*d.sample), d.stale ? 1 : 0);
}
void age(const MetricsView& v, MetricsOut& out) {
  if (v.have_data) put(out, v.age_seconds);
}
void duration(const MetricsView& v, MetricsOut& out) {
  if (v.have_data) put(out, v.duration_seconds);
}
void collecting(const MetricsView& v, MetricsOut& out) { put(out, v.collecting ? 1 : 0); }
void collections(const MetricsView& v, MetricsOut& out) {
  const std::string ok = "ok", failed = "failed";
  put(out, Labels().add("result", ok), static_cast<double>(v.collections_ok));
  put(out, Labels().add("result", failed), static_cast<double>(v.collections_failed));
}

const Family kFamilies[] = {
    // prometheus-libvirt-exporter 0.2.0, as it serves them.
    {{"libvirt_domain_block_stats_read_bytes_total", kCounter, "Number of bytes read from a block device, in bytes.", true},
     "bytes", block_family<&BlockSample::rd_bytes, &BlockSample::has_io>},
    {{"libvirt_domain_block_stats_read_requests_total", kCounter, "Number of read requests from a block device.", true},
     nullptr, block_family<&BlockSample::rd_reqs, &BlockSample::has_io>},
    {{"libvirt_domain_block_stats_write_bytes_total", kCounter, "Number of bytes written from a block device, in bytes.", true},
     "bytes", block_family<&BlockSample::wr_bytes, &BlockSample::has_io>},
    {{"libvirt_domain_block_stats_write_requests_total", kCounter, "Number of write requests from a block device.", true},
     nullptr, block_family<&BlockSample::wr_reqs, &BlockSample::has_io>},
    {{"libvirt_domain_info_cpu_time_seconds_total", kCounter, "Amount of CPU time used by the domain, in seconds.", true},
     "seconds", domain_ns_family<&DomainSample::cpu_time_ns>},
    {{"libvirt_domain_info_maximum_memory_bytes", kGauge, "Maximum allowed memory of the domain, in bytes.", true},
     "bytes", domain_family<&DomainSample::max_memory_kib, 1024>},
    {{"libvirt_domain_info_memory_usage_bytes", kGauge, "Memory usage of the domain, in bytes.", true}, "bytes",
     domain_family<&DomainSample::memory_kib, 1024>},
    {{"libvirt_domain_info_virtual_cpus", kGauge, "Number of virtual CPUs for the domain.", true}, nullptr,
     domain_family<&DomainSample::vcpus, 1>},
    {{"libvirt_domain_interface_stats_receive_bytes_total", kCounter, "Number of bytes received on a network interface, in bytes.", true},
     "bytes", interface_family<&InterfaceSample::rx_bytes>},
    {{"libvirt_domain_interface_stats_receive_drops_total", kCounter, "Number of packet receive drops on a network interface.", true},
     nullptr, interface_family<&InterfaceSample::rx_drop>},
    {{"libvirt_domain_interface_stats_receive_errors_total", kCounter, "Number of packet receive errors on a network interface.", true},
     nullptr, interface_family<&InterfaceSample::rx_errs>},
    {{"libvirt_domain_interface_stats_receive_packets_total", kCounter, "Number of packets received on a network interface.", true},
     nullptr, interface_family<&InterfaceSample::rx_pkts>},
    {{"libvirt_domain_interface_stats_transmit_bytes_total", kCounter, "Number of bytes transmitted on a network interface, in bytes.", true},
     "bytes", interface_family<&InterfaceSample::tx_bytes>},
    {{"libvirt_domain_interface_stats_transmit_drops_total", kCounter, "Number of packet transmit drops on a network interface.", true},
     nullptr, interface_family<&InterfaceSample::tx_drop>},
    {{"libvirt_domain_interface_stats_transmit_errors_total", kCounter, "Number of packet transmit errors on a network interface.", true},
     nullptr, interface_family<&InterfaceSample::tx_errs>},
    {{"libvirt_domain_interface_stats_transmit_packets_total", kCounter, "Number of packets transmitted on a network interface.", true},
     nullptr, interface_family<&InterfaceSample::tx_pkts>},
    {{"libvirt_domain_state_code", kGauge, "State of the domain.", true}, nullptr, state_code},
    {{"libvirt_domains_number", kGauge, "Number of domains.", true}, nullptr, domains_number},
    {{"libvirt_up", kGauge, "Whether scraping libvirt's metrics was successful.", true}, nullptr, up},

    // hostlet's additions.
    {{"libvirt_domain_state_reason_code", kGauge, "Reason of the domain's state (virDomain*Reason of its state).", false},
     nullptr, state_reason},
    {{"libvirt_domain_block_capacity_bytes", kGauge, "Logical size of a block device, in bytes.", false}, "bytes",
     block_family<&BlockSample::capacity, &BlockSample::has_size>},
    {{"libvirt_domain_block_allocation_bytes", kGauge, "Highest allocated extent of a block device, in bytes.", false},
     "bytes", block_family<&BlockSample::allocation, &BlockSample::has_size>},
    {{"libvirt_domain_block_physical_bytes", kGauge, "Physical size of a block device's container, in bytes.", false},
     "bytes", block_family<&BlockSample::physical, &BlockSample::has_size>},
    {{"libvirt_domain_vcpu_time_seconds_total", kCounter, "CPU time used by one virtual CPU, in seconds.", false},
     "seconds", vcpu_family<&VcpuSample::time_ns, 1000000000>},
    {{"libvirt_domain_vcpu_state", kGauge, "State of one virtual CPU (virVcpuState: 0 offline, 1 running, 2 blocked).", false},
     nullptr, vcpu_family<&VcpuSample::state, 1>},
    {{"libvirt_domain_memory_actual_balloon_bytes", kGauge, "Current balloon size, in bytes.", false}, "bytes",
     BALLOON("actual", true)},
    {{"libvirt_domain_memory_available_bytes", kGauge, "Memory the guest sees as available, in bytes.", false}, "bytes",
     BALLOON("available", true)},
    {{"libvirt_domain_memory_unused_bytes", kGauge, "Memory the guest leaves unused, in bytes.", false}, "bytes",
     BALLOON("unused", true)},
    {{"libvirt_domain_memory_usable_bytes", kGauge, "Memory the guest could use without swapping, in bytes.", false}, "bytes",
     BALLOON("usable", true)},
    {{"libvirt_domain_memory_rss_bytes", kGauge, "Resident set size of the domain's process on the host, in bytes.", false},
     "bytes", BALLOON("rss", true)},
    {{"libvirt_domain_memory_disk_caches_bytes", kGauge, "Memory the guest can reclaim from its disk caches, in bytes.", false},
     "bytes", BALLOON("disk_caches", true)},
    {{"libvirt_domain_memory_swap_in_bytes_total", kCounter, "Memory swapped in by the guest, in bytes.", false}, "bytes",
     BALLOON("swap_in", true)},
    {{"libvirt_domain_memory_swap_out_bytes_total", kCounter, "Memory swapped out by the guest, in bytes.", false}, "bytes",
     BALLOON("swap_out", true)},
    {{"libvirt_domain_memory_major_faults_total", kCounter, "Major page faults in the guest.", false}, nullptr,
     BALLOON("major_fault", false)},
    {{"libvirt_domain_memory_minor_faults_total", kCounter, "Minor page faults in the guest.", false}, nullptr,
     BALLOON("minor_fault", false)},
    {{"libvirt_node_cpus", kGauge, "Active CPUs of the host (virNodeGetInfo).", false}, nullptr, node_cpus},
    {{"libvirt_node_cpu_frequency_mhz", kGauge, "Expected CPU frequency of the host, in MHz.", false}, nullptr, node_mhz},
    {{"libvirt_node_memory_bytes", kGauge, "Memory of the host (virNodeGetInfo), in bytes.", false}, "bytes", node_memory},
    {{"libvirt_node_cpu_time_seconds_total", kCounter, "CPU time of the host by mode (virNodeGetCPUStats), in seconds.", false},
     "seconds", node_cpu_time},
    {{"libvirt_node_memory_stats_bytes", kGauge, "Memory of the host by kind (virNodeGetMemoryStats), in bytes.", false},
     "bytes", node_memory_stats},
    {{"hostlet_libvirt_domain_stale", kGauge, "1 when the last collection missed a domain it had seen: its values are from an earlier one.", false},
     nullptr, stale},
    {{"hostlet_libvirt_stats_age_seconds", kGauge, "Age of the data served, in seconds.", false}, "seconds", age},
    {{"hostlet_libvirt_stats_duration_seconds", kGauge, "How long the last successful collection took, in seconds.", false},
     "seconds", duration},
    {{"hostlet_libvirt_stats_collecting", kGauge, "1 while a collection is in flight.", false}, nullptr, collecting},
    {{"hostlet_libvirt_stats_collections_total", kCounter, "Collections finished, by result.", false}, nullptr, collections},
};

}  // namespace

std::span<const FamilyInfo> families() {
  static const std::vector<FamilyInfo> infos = [] {
    std::vector<FamilyInfo> v;
    for (const Family& f : kFamilies) v.push_back(f.info);
    return v;
  }();
  return infos;
}

void write_metrics(const MetricsView& view, MetricsOut& out) {
  for (const Family& f : kFamilies) {
    if (out.family(f.info.name, f.info.type, f.info.help, f.unit) != 0) continue;
    f.write(view, out);
  }
}

}  // namespace hostlet_virt
