// Writes the libvirt plugin's metric families from its cache: the families,
// types, help texts and labels of prometheus-libvirt-exporter 0.2.0 (so
// dashboards and alerts written for it keep working), then hostlet's own
// (balloon, per-vCPU, block sizes, state reason, node, staleness). The
// README's metric table is checked against kFamilies by a test.
#pragma once

#include "stats.hpp"

#include <hostlet/plugin.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hostlet_virt {

// Where families go: the host's writer (ApiMetrics) or a test's fake.
class MetricsOut {
 public:
  virtual ~MetricsOut() = default;
  virtual int family(const char* name, hostlet_metric_type type, const char* help, const char* unit) = 0;
  virtual int sample(const hostlet_attr* labels, size_t n_labels, double value) = 0;
};

// The C++ wrapper's writer (the host's metric_family / metric_sample) for one collect() call.
class ApiMetrics final : public MetricsOut {
 public:
  explicit ApiMetrics(hostlet::Metrics& m) : m_(m) {}
  int family(const char* name, hostlet_metric_type type, const char* help, const char* unit) override {
    return m_.family(name, type, help, unit);
  }
  int sample(const hostlet_attr* labels, size_t n, double value) override { return m_.sample(value, labels, n); }

 private:
  hostlet::Metrics& m_;
};

// A domain as the cache serves it: its last sample, and whether the last
// collection missed it.
struct CachedDomain {
  const DomainSample* sample;
  bool stale;
};

struct MetricsView {
  bool connected = false;           // libvirt_up
  bool have_data = false;           // a collection has succeeded on this connection
  double age_seconds = 0;           // of the last successful collection
  double duration_seconds = 0;      // how long it took
  bool collecting = false;          // one is in flight
  uint64_t collections_ok = 0, collections_failed = 0;
  std::vector<CachedDomain> domains;
  const NodeSample* node = nullptr;
};

struct FamilyInfo {
  const char* name;
  hostlet_metric_type type;
  const char* help;
  bool exporter;  // served by prometheus-libvirt-exporter 0.2.0 under this name
};
// Every family write_metrics may write, in the order it writes them.
std::span<const FamilyInfo> families();

void write_metrics(const MetricsView& view, MetricsOut& out);

}  // namespace hostlet_virt
