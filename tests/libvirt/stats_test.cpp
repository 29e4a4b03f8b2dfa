// stats.cpp: the device labels of a domain XML, and one collection against
// libvirt's in-process test driver (the slow path: its driver has only "state").
#include <catch2/catch.hpp>

#include "stats.hpp"

namespace hv = hostlet_virt;

TEST_CASE("stats: a domain XML's disks and interfaces give the exporter's labels", "[stats]") {
  const auto d = hv::DeviceCache::parse(
      "<domain><devices>"
      "<disk type='file'><source file='/img/a.qcow2'/><target dev='vda'/></disk>"
      "<disk type='block'><source dev='/dev/sdb'/><target dev='vdb'/></disk>"
      "<disk type='file'><target dev='hdc'/></disk>"
      "<interface type='bridge'><source bridge='br0'/><target dev='vnet3'/></interface>"
      "<interface type='network'><source network='default'/></interface>"
      "</devices></domain>");
  using P = std::pair<std::string, std::string>;
  CHECK(d.disks == std::vector<P>{{"vda", "/img/a.qcow2"}, {"vdb", "/dev/sdb"}, {"hdc", ""}});
  CHECK(d.interfaces == std::vector<P>{{"vnet3", "br0"}});  // no target: not yet running, nothing to ask
}

TEST_CASE("stats: a broken XML gives no devices, not a crash", "[stats]") {
  CHECK(hv::DeviceCache::parse("<domain><devices><disk").disks.empty());
  CHECK(hv::DeviceCache::parse("").interfaces.empty());
  // libvirtd never writes a DOCTYPE; one could expand short entities into
  // labels longer than the XML (found by the libvirt_xml fuzz target).
  CHECK(hv::DeviceCache::parse("<!DOCTYPE d [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><domain><devices>"
                               "<interface><source bridge='&b;'/><target dev='t'/></interface></devices></domain>")
            .interfaces.empty());
}

TEST_CASE("stats: one collection of test:///default: the running domain, its info, the node", "[stats]") {
  virConnectPtr c = virConnectOpen("test:///default");
  REQUIRE(c);
  hv::DeviceCache devices;
  hv::Snapshot s = hv::collect_snapshot(c, devices);
  REQUIRE(s.ok);
  REQUIRE(s.domains.size() == 1);
  const hv::DomainSample& d = s.domains[0];
  CHECK(d.name == "test");
  CHECK(d.uuid.size() == 36);
  CHECK(d.state == VIR_DOMAIN_RUNNING);
  CHECK(d.max_memory_kib == 8388608);
  CHECK(d.vcpus == 2);
  CHECK(s.node.has_info);
  CHECK(s.node.info.cpus > 0);
  virConnectClose(c);
}
