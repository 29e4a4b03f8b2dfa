#include "stats.hpp"

#include "xml_tree.hpp"

#include <libvirt/virterror.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace hostlet_virt {
namespace {

struct StatsFree {
  void operator()(virDomainStatsRecordPtr* r) const { virDomainStatsRecordListFree(r); }
};

std::string uuid_text(virDomainPtr d) {
  char buf[VIR_UUID_STRING_BUFLEN] = {};
  virDomainGetUUIDString(d, buf);
  return buf;
}

std::string last_error() {
  virErrorPtr e = virGetLastError();
  std::string m = e && e->message ? e->message : "unknown libvirt error";
  virResetLastError();
  return m;
}

// The record's parameters by field name.
class Params {
 public:
  explicit Params(virDomainStatsRecordPtr r) : r_(r) {}
  bool has(const std::string& key) const { return find(key) != nullptr; }
  double num(const std::string& key, double fallback = 0) const {
    const virTypedParameter* p = find(key);
    if (!p) return fallback;
    switch (p->type) {
      case VIR_TYPED_PARAM_INT: return p->value.i;
      case VIR_TYPED_PARAM_UINT: return p->value.ui;
      case VIR_TYPED_PARAM_LLONG: return static_cast<double>(p->value.l);
      case VIR_TYPED_PARAM_ULLONG: return static_cast<double>(p->value.ul);
      case VIR_TYPED_PARAM_DOUBLE: return p->value.d;
      case VIR_TYPED_PARAM_BOOLEAN: return p->value.b;
      default: return fallback;
    }
  }
  std::string str(const std::string& key) const {
    const virTypedParameter* p = find(key);
    return p && p->type == VIR_TYPED_PARAM_STRING && p->value.s ? p->value.s : "";
  }
  bool has_prefix(const char* prefix) const {
    const size_t n = std::strlen(prefix);
    for (int i = 0; i < r_->nparams; i++)
      if (std::strncmp(r_->params[i].field, prefix, n) == 0) return true;
    return false;
  }
  template <class F> void each_with_prefix(const char* prefix, F&& f) const {
    const size_t n = std::strlen(prefix);
    for (int i = 0; i < r_->nparams; i++)
      if (std::strncmp(r_->params[i].field, prefix, n) == 0) f(std::string(r_->params[i].field + n));
  }

 private:
  const virTypedParameter* find(const std::string& key) const {
    for (int i = 0; i < r_->nparams; i++)
      if (key == r_->params[i].field) return &r_->params[i];
    return nullptr;
  }
  virDomainStatsRecordPtr r_;
};

using hostlet::xml::attr;
using hostlet::xml::child;
using hostlet::xml::child_attr;
using hostlet::xml::named;

// A disk's source as the exporter labels it: the file (or block device, or network name).
std::string disk_source(xmlNode* disk) {
  xmlNode* s = child(disk, "source");
  if (!s) return {};
  for (const char* a : {"file", "dev", "name", "volume"})
    if (std::string v = attr(s, a); !v.empty()) return v;
  return {};
}

void fill_from_info(virDomainPtr dom, DomainSample& d) {
  virDomainInfo info{};
  if (virDomainGetInfo(dom, &info) < 0) {
    virResetLastError();
    return;
  }
  d.max_memory_kib = static_cast<double>(info.maxMem);
  d.memory_kib = static_cast<double>(info.memory);
  d.vcpus = info.nrVirtCpu;
  d.cpu_time_ns = static_cast<double>(info.cpuTime);
}

// rx bytes, packets, errors, drops, then the same for tx.
void set_counters(InterfaceSample& s, const std::array<double, 8>& v) {
  s.rx_bytes = v[0];
  s.rx_pkts = v[1];
  s.rx_errs = v[2];
  s.rx_drop = v[3];
  s.tx_bytes = v[4];
  s.tx_pkts = v[5];
  s.tx_errs = v[6];
  s.tx_drop = v[7];
}

void fill_blocks_from_record(const Params& p, DomainSample& d) {
  const int n = static_cast<int>(p.num("block.count"));
  for (int i = 0; i < n; i++) {
    const std::string k = "block." + std::to_string(i) + ".";
    BlockSample b;
    b.target = p.str(k + "name");
    b.source = p.str(k + "path");
    b.has_io = p.has(k + "rd.reqs");
    b.rd_reqs = p.num(k + "rd.reqs");
    b.rd_bytes = p.num(k + "rd.bytes");
    b.wr_reqs = p.num(k + "wr.reqs");
    b.wr_bytes = p.num(k + "wr.bytes");
    b.has_size = p.has(k + "capacity");
    b.capacity = p.num(k + "capacity");
    b.allocation = p.num(k + "allocation");
    b.physical = p.num(k + "physical");
    if (!b.target.empty()) d.blocks.push_back(std::move(b));
  }
}

void fill_interfaces_from_record(const Params& p, const DeviceCache::Devices& dev, DomainSample& d) {
  const int n = static_cast<int>(p.num("net.count"));
  for (int i = 0; i < n; i++) {
    const std::string k = "net." + std::to_string(i) + ".";
    InterfaceSample s;
    s.target = p.str(k + "name");
    for (auto& [target, bridge] : dev.interfaces)
      if (target == s.target) s.bridge = bridge;
    set_counters(s, {p.num(k + "rx.bytes"), p.num(k + "rx.pkts"), p.num(k + "rx.errs"), p.num(k + "rx.drop"),
                     p.num(k + "tx.bytes"), p.num(k + "tx.pkts"), p.num(k + "tx.errs"), p.num(k + "tx.drop")});
    if (!s.target.empty()) d.interfaces.push_back(std::move(s));
  }
}

// The exporter's way: per device of the XML, one call each.
void fill_devices_per_call(virDomainPtr dom, const DeviceCache::Devices& dev, DomainSample& d) {
  for (auto& [target, source] : dev.disks) {
    virDomainBlockStatsStruct st{};
    BlockSample b;
    b.target = target;
    b.source = source;
    if (virDomainBlockStats(dom, target.c_str(), &st, sizeof st) == 0) {
      b.has_io = true;
      b.rd_reqs = static_cast<double>(st.rd_req);
      b.rd_bytes = static_cast<double>(st.rd_bytes);
      b.wr_reqs = static_cast<double>(st.wr_req);
      b.wr_bytes = static_cast<double>(st.wr_bytes);
    } else {
      virResetLastError();
    }
    virDomainBlockInfo bi{};
    if (virDomainGetBlockInfo(dom, target.c_str(), &bi, 0) == 0) {
      b.has_size = true;
      b.capacity = static_cast<double>(bi.capacity);
      b.allocation = static_cast<double>(bi.allocation);
      b.physical = static_cast<double>(bi.physical);
    } else {
      virResetLastError();
    }
    d.blocks.push_back(std::move(b));
  }
  for (auto& [target, bridge] : dev.interfaces) {
    virDomainInterfaceStatsStruct st{};
    if (virDomainInterfaceStats(dom, target.c_str(), &st, sizeof st) < 0) {
      virResetLastError();
      continue;
    }
    InterfaceSample s;
    s.target = target;
    s.bridge = bridge;
    auto n = [](long long v) { return static_cast<double>(v); };
    set_counters(s, {n(st.rx_bytes), n(st.rx_packets), n(st.rx_errs), n(st.rx_drop), n(st.tx_bytes),
                     n(st.tx_packets), n(st.tx_errs), n(st.tx_drop)});
    d.interfaces.push_back(std::move(s));
  }
}

void fill_vcpus(const Params& p, DomainSample& d) {
  const int n = static_cast<int>(p.num("vcpu.maximum", p.num("vcpu.current")));
  for (int i = 0; i < n; i++) {
    const std::string k = "vcpu." + std::to_string(i) + ".";
    if (!p.has(k + "state")) continue;
    d.vcpu.push_back({static_cast<unsigned>(i), p.num(k + "state"), p.num(k + "time")});
  }
}

void fill_balloon(const Params& p, DomainSample& d) {
  p.each_with_prefix("balloon.", [&](const std::string& key) {
    if (key != "maximum" && key != "current" && key != "last-update") d.balloon[key] = p.num("balloon." + key);
  });
}

void collect_node(virConnectPtr conn, NodeSample& n) {
  n.has_info = virNodeGetInfo(conn, &n.info) == 0;
  int count = 0;
  if (virNodeGetCPUStats(conn, VIR_NODE_CPU_STATS_ALL_CPUS, nullptr, &count, 0) == 0 && count > 0) {
    std::vector<virNodeCPUStats> st(static_cast<size_t>(count));
    if (virNodeGetCPUStats(conn, VIR_NODE_CPU_STATS_ALL_CPUS, st.data(), &count, 0) == 0)
      for (int i = 0; i < count; i++) n.cpu_ns.emplace_back(st[i].field, static_cast<double>(st[i].value));
  }
  count = 0;
  if (virNodeGetMemoryStats(conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, nullptr, &count, 0) == 0 && count > 0) {
    std::vector<virNodeMemoryStats> st(static_cast<size_t>(count));
    if (virNodeGetMemoryStats(conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, st.data(), &count, 0) == 0)
      for (int i = 0; i < count; i++) n.memory_kib.emplace_back(st[i].field, static_cast<double>(st[i].value));
  }
  virResetLastError();  // a driver without node CPU or memory stats: left out
}

}  // namespace

DeviceCache::Devices DeviceCache::parse(const std::string& xml) {
  Devices out;
  hostlet::xml::Doc doc = hostlet::xml::read(xml, "domain.xml");
  if (!doc) return out;
  xmlNode* root = xmlDocGetRootElement(doc.get());
  xmlNode* devices = root ? child(root, "devices") : nullptr;
  if (!devices) return out;
  for (xmlNode* c = devices->children; c; c = c->next) {
    if (named(c, "disk")) {
      std::string target = child_attr(c, "target", "dev");
      if (!target.empty()) out.disks.emplace_back(target, disk_source(c));
    } else if (named(c, "interface")) {
      std::string target = child_attr(c, "target", "dev");
      if (!target.empty()) out.interfaces.emplace_back(target, child_attr(c, "source", "bridge"));
    }
  }
  return out;
}

DeviceCache::Devices DeviceCache::get(virDomainPtr dom, const std::string& uuid) {
  const unsigned id = virDomainGetID(dom);
  {
    std::lock_guard lk(mu_);
    auto it = by_uuid_.find(uuid);
    if (it != by_uuid_.end() && it->second.id == id) {
      it->second.seen = generation_;
      return it->second.devices;
    }
  }
  char* xml = virDomainGetXMLDesc(dom, 0);
  if (!xml) {
    virResetLastError();
    return {};
  }
  Devices devices = parse(xml);
  std::free(xml);
  std::lock_guard lk(mu_);
  by_uuid_[uuid] = Entry{id, devices, generation_};
  return devices;
}

void DeviceCache::sweep() {
  std::lock_guard lk(mu_);
  for (auto it = by_uuid_.begin(); it != by_uuid_.end();)
    it = it->second.seen == generation_ ? std::next(it) : by_uuid_.erase(it);
  generation_++;
}

Snapshot collect_snapshot(virConnectPtr conn, DeviceCache& devices) {
  Snapshot s;
  constexpr unsigned kGroups = VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_CPU_TOTAL | VIR_DOMAIN_STATS_BALLOON |
                               VIR_DOMAIN_STATS_VCPU | VIR_DOMAIN_STATS_INTERFACE | VIR_DOMAIN_STATS_BLOCK;
  virDomainStatsRecordPtr* raw = nullptr;
  const int n = virConnectGetAllDomainStats(
      conn, kGroups, &raw,
      unsigned{VIR_CONNECT_LIST_DOMAINS_ACTIVE} | unsigned{VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT});
  if (n < 0) {
    s.error = last_error();
    return s;
  }
  std::unique_ptr<virDomainStatsRecordPtr, StatsFree> recs(raw);
  // Which groups this driver has at all (see the header: the slow path is per driver, not per domain).
  bool has_info = false, has_block = false, has_net = false;
  for (int i = 0; i < n; i++) {
    Params p(raw[i]);
    has_info = has_info || p.has("balloon.maximum") || p.has("vcpu.current");
    has_block = has_block || p.has("block.count");
    has_net = has_net || p.has("net.count");
  }
  s.domains.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) {
    Params p(raw[i]);
    virDomainPtr dom = raw[i]->dom;
    DomainSample d;
    const char* name = virDomainGetName(dom);
    d.name = name ? name : "";
    d.uuid = uuid_text(dom);
    d.state = static_cast<int>(p.num("state.state"));
    d.reason = static_cast<int>(p.num("state.reason"));
    if (has_info) {
      d.max_memory_kib = p.num("balloon.maximum");
      d.memory_kib = p.num("balloon.current");
      d.vcpus = p.num("vcpu.current");
      d.cpu_time_ns = p.num("cpu.time");
    } else {
      fill_from_info(dom, d);
    }
    fill_balloon(p, d);
    fill_vcpus(p, d);
    const DeviceCache::Devices dev = devices.get(dom, d.uuid);
    if (has_block || has_net) {
      fill_blocks_from_record(p, d);
      for (BlockSample& b : d.blocks)
        for (auto& [target, source] : dev.disks)
          if (b.source.empty() && target == b.target) b.source = source;
      fill_interfaces_from_record(p, dev, d);
    } else {
      fill_devices_per_call(dom, dev, d);
    }
    s.domains.push_back(std::move(d));
  }
  devices.sweep();
  collect_node(conn, s.node);
  s.ok = true;
  return s;
}

}  // namespace hostlet_virt
