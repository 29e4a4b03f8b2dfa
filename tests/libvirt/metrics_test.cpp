// metrics.cpp: the family table against the host's rules and the README, and
// the writer on a fake MetricsOut.
#include <catch2/catch.hpp>

#include "metrics.hpp"
#include "support.hpp"

#include <map>
#include <string>
#include <vector>

namespace hv = hostlet_virt;

namespace {
// Records families and samples as "name{k=v,...}" -> value.
class FakeOut final : public hv::MetricsOut {
 public:
  int family(const char* name, hostlet_metric_type, const char*, const char*) override {
    current_ = name;
    return 0;
  }
  int sample(const hostlet_attr* labels, size_t n, double value) override {
    std::string key = current_ + "{";
    for (size_t i = 0; i < n; i++) key += std::string(labels[i].key) + "=" + labels[i].value + ",";
    samples[key + "}"] = value;
    return 0;
  }
  std::map<std::string, double> samples;

 private:
  std::string current_;
};
}  // namespace

TEST_CASE("metrics: counters end in _total, names are unique, the README lists every family", "[metrics]") {
  const std::string readme = hostlet::test::read_file(VIRT_README);
  std::map<std::string, int> seen;
  for (const hv::FamilyInfo& f : hv::families()) {
    const std::string name = f.name;
    INFO(name);
    CHECK(seen[name]++ == 0);
    const bool total = name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0;
    CHECK(total == (f.type == HOSTLET_METRIC_COUNTER));
    // The README's table names families in full or with {a,b} alternatives
    // after a common stem: the name, or its first four words, must appear.
    size_t cut = 0;
    for (int words = 0; words < 4 && cut != std::string::npos; words++) cut = name.find('_', cut + 1);
    const std::string stem = name.substr(0, cut);
    CHECK((readme.find("`" + name + "`") != std::string::npos || readme.find("`" + stem) != std::string::npos));
  }
}

TEST_CASE("metrics: a stale domain keeps its values and says so; disconnected writes libvirt_up 0 only", "[metrics]") {
  hv::DomainSample d;
  d.name = "vm";
  d.uuid = "u";
  d.state = 1;
  d.max_memory_kib = 1024;
  d.vcpus = 2;
  hv::MetricsView v;
  v.connected = v.have_data = true;
  v.domains.push_back({&d, true});
  FakeOut out;
  hv::write_metrics(v, out);
  CHECK(out.samples["libvirt_domain_info_maximum_memory_bytes{domain=vm,uuid=u,}"] == 1024.0 * 1024);
  CHECK(out.samples["hostlet_libvirt_domain_stale{domain=vm,uuid=u,}"] == 1);
  CHECK(out.samples["libvirt_up{}"] == 1);
  CHECK(out.samples["libvirt_domains_number{}"] == 1);

  hv::MetricsView down;
  FakeOut out2;
  hv::write_metrics(down, out2);
  CHECK(out2.samples["libvirt_up{}"] == 0);
  CHECK(out2.samples.count("libvirt_domains_number{}") == 0);
}
