// hostlet-hook's pure parts: hook.conf, libvirt's argv, the XML on stdin, the
// notification line and the reading of the agent's answer.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <string>

#include "hook.hpp"

using namespace hostlet::hook;

namespace {

std::string attr_of(const Attrs& a, const std::string& k) {
  for (const auto& [key, v] : a)
    if (key == k) return v;
  return "<absent>";
}

const char* kDomain = R"(<domain type='kvm'>
  <name>vm1</name>
  <uuid>14ffb12f-5721-4a78-af9b-40b612a71aec</uuid>
  <memory unit='GiB'>2</memory>
  <memoryBacking><hugepages><page size='1' unit='G' nodeset='0'/></hugepages></memoryBacking>
  <vcpu placement='static' cpuset='2-5,^3'>4</vcpu>
  <devices>
    <disk type='file'><target dev='vda'/></disk>
    <hostdev mode='subsystem' type='pci' managed='no'>
      <source><address domain='0x0000' bus='0x06' slot='0x02' function='0x0'/></source>
    </hostdev>
    <hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/></source></hostdev>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0001' bus='0xAf' slot='0x1f' function='0x7'/></source>
    </hostdev>
  </devices>
</domain>)";

}  // namespace

TEST_CASE("hook.conf: keys, units, comments; every mistake names its line") {
  Config c;
  std::string err;
  REQUIRE(parse_config("# comment\n socket = /run/x.sock \ntimeout=2s # inline\non_unreachable = closed\n"
                       "max_stdin = 1MiB\n",
                       c, err));
  CHECK(c.socket == "/run/x.sock");
  CHECK(c.timeout_ms == 2000);
  CHECK(c.fail_closed);
  CHECK(c.max_stdin == 1u << 20);

  Config d;
  REQUIRE(parse_config("", d, err));
  CHECK(d.socket == "/run/hostlet/notify.sock");
  CHECK(d.timeout_ms == 10000);
  CHECK_FALSE(d.fail_closed);

  struct Bad {
    const char* text;
    const char* says;
  } bad[] = {
      {"socket\n", "line 1: expected 'key = value'"},
      {"\n\ntimout = 1s\n", "line 3: unknown key 'timout'"},
      {"timeout = 0\n", "line 1: timeout must be"},
      {"timeout = 2h\n", "timeout must be"},
      {"timeout = 1s\ntimeout = 2s\n", "line 2: 'timeout' given twice"},
      {"on_unreachable = maybe\n", "'open' or 'closed'"},
      {"socket = relative.sock\n", "absolute path"},
      {"max_stdin = 12\n", "max_stdin must be"},
      {"max_stdin = 99999999999999999999999\n", "max_stdin must be"},
      {"socket = /a\x01b\n", "control character"},
  };
  for (const auto& b : bad) {
    Config x;
    std::string e;
    INFO(b.text);
    CHECK_FALSE(parse_config(b.text, x, e));
    CHECK_THAT(e, Catch::Contains(b.says));
  }
  std::string huge(65 * 1024, '#');
  CHECK_FALSE(parse_config(huge, c, err));
}

TEST_CASE("hook argv: the object from the program's name or its .d directory, libvirt's four arguments") {
  Invocation inv;
  std::string err;
  REQUIRE(parse_invocation({"/etc/libvirt/hooks/qemu", "vm1", "prepare", "begin", "-"}, inv, err));
  CHECK(inv.object == "qemu");
  CHECK(inv.name == "vm1");
  CHECK(inv.operation == "prepare");
  CHECK(inv.sub_operation == "begin");
  CHECK(inv.extra == "-");
  CHECK(event_type(inv) == "libvirt.hook.qemu.prepare");

  Invocation d;
  REQUIRE(parse_invocation({"/etc/libvirt/hooks/network.d/50-hostlet", "default", "port-created", "begin"}, d, err));
  CHECK(d.object == "network");
  CHECK(d.extra == "-");

  Invocation x;
  CHECK_FALSE(parse_invocation({"/usr/sbin/hostlet-hook", "a", "b", "c"}, x, err));
  CHECK_THAT(err, Catch::Contains("ln -s /usr/sbin/hostlet-hook /etc/libvirt/hooks/qemu"));
  Invocation y;
  CHECK_FALSE(parse_invocation({"qemu", "vm1"}, y, err));
  CHECK_THAT(err, Catch::Contains("NAME OPERATION SUB_OPERATION"));
  Invocation z;
  CHECK_FALSE(parse_invocation({"qemu", "vm1", "pre.pare", "begin", "-"}, z, err));
  CHECK_THAT(err, Catch::Contains("not a libvirt hook operation"));

  CHECK(vetoable("prepare"));
  CHECK(vetoable("start"));
  CHECK(vetoable("migrate"));
  CHECK(vetoable("restore"));
  CHECK_FALSE(vetoable("started"));
  CHECK_FALSE(vetoable("release"));
}

TEST_CASE("hook XML: uuid, PCI hostdevs, memory and hugepages, vCPUs; the event's attributes") {
  Description d;
  std::string err;
  REQUIRE(read_description(kDomain, d, err));
  CHECK(d.uuid == "14ffb12f-5721-4a78-af9b-40b612a71aec");
  REQUIRE(d.hostdevs.size() == 2);  // the USB one is not PCI
  CHECK(d.hostdevs[0] == "0000:06:02.0");
  CHECK(d.hostdevs[1] == "0001:af:1f.7");
  CHECK(d.memory_kib == 2u * 1024 * 1024);
  CHECK(d.hugepage_kib == 1024u * 1024);
  CHECK(d.vcpus == "4");
  CHECK(d.cpuset == "2-5,^3");

  Invocation inv;
  REQUIRE(parse_invocation({"/etc/libvirt/hooks/qemu", "vm1", "prepare", "begin", "-"}, inv, err));
  Attrs a = event_attrs(inv, d, 2048);
  CHECK(attr_of(a, "object") == "qemu");
  CHECK(attr_of(a, "domain") == "vm1");
  CHECK(attr_of(a, "operation") == "prepare");
  CHECK(attr_of(a, "sub_operation") == "begin");
  CHECK(attr_of(a, "extra") == "-");
  CHECK(attr_of(a, "uuid") == d.uuid);
  CHECK(attr_of(a, "hostdevs") == "0000:06:02.0 0001:af:1f.7");
  CHECK(attr_of(a, "hostdev_count") == "2");
  CHECK(attr_of(a, "hostdev.0") == "0000:06:02.0");
  CHECK(attr_of(a, "hostdev.0.managed") == "no");
  CHECK(attr_of(a, "hostdev.1.managed") == "yes");
  CHECK(attr_of(a, "memory_kib") == "2097152");
  CHECK(attr_of(a, "hugepage_kib") == "1048576");
  CHECK(attr_of(a, "hugepages") == "2");
  CHECK(attr_of(a, "vcpus") == "4");

  nlohmann::json line = nlohmann::json::parse(notification_line(inv, a));
  CHECK(line["type"] == "libvirt.hook.qemu.prepare");
  CHECK(line["ack"] == "done");
  CHECK(line["attrs"]["hostdev.1"] == "0001:af:1f.7");
  CHECK(line.dump().find("<domain") == std::string::npos);  // the raw XML stays out

  // <hugepages/> without a page size: the host's default page, rounded up.
  Description h;
  REQUIRE(read_description("<domain><memory>3000</memory><memoryBacking><hugepages/></memoryBacking></domain>", h, err));
  Attrs ha = event_attrs(inv, h, 2048);
  CHECK(attr_of(ha, "hugepage_kib") == "2048");
  CHECK(attr_of(ha, "hugepages") == "2");
  CHECK(attr_of(ha, "hostdev_count") == "0");
  CHECK(attr_of(ha, "hostdevs") == "<absent>");

  // Empty stdin (the daemon hook) is nothing to read.
  Description e;
  REQUIRE(read_description("", e, err));
  // libvirt's hookData wrapper, and a network.
  Description w;
  REQUIRE(read_description("<hookData><network><name>n</name><uuid>u-1</uuid></network><networkport/></hookData>",
                           w, err));
  CHECK(w.uuid == "u-1");
  CHECK(meminfo_hugepage_kib("MemTotal: 1 kB\nHugepagesize:       2048 kB\nHugetlb: 0 kB\n") == 2048);
  CHECK(meminfo_hugepage_kib("MemTotal: 1 kB\n") == 0);
}

TEST_CASE("hook XML: malformed or hostile input is a clear error") {
  struct Bad {
    std::string xml;
    const char* says;
  } bad[] = {
      {"<domain><name>x</nam", "does not parse"},
      {"not xml at all", "does not parse"},
      {"<pool/>", "not a <domain>, <network> or <hookData>"},
      {"<domain><memory unit='parsec'>1</memory></domain>", "<memory> is not a size"},
      {"<domain><memory>99999999999999999999999</memory></domain>", "<memory> is not a size"},
      {"<domain><memory unit='TiB'>99999999999</memory></domain>", "<memory> is not a size"},
      {"<domain><vcpu>four</vcpu></domain>", "<vcpu> is not a count"},
      {"<domain><vcpu cpuset='1;rm'>1</vcpu></domain>", "cpuset"},
      {"<domain><memoryBacking><hugepages><page size='x'/></hugepages></memoryBacking></domain>", "page size"},
      {"<domain><devices><hostdev mode='subsystem' type='pci'><source/></hostdev></devices></domain>",
       "without a valid <source><address"},
      {"<domain><devices><hostdev mode='subsystem' type='pci'><source><address domain='0x0000' bus='0x100' "
       "slot='0x0' function='0x0'/></source></hostdev></devices></domain>",
       "without a valid"},
      {"<domain><devices><hostdev mode='subsystem' type='pci'><source><address domain='0x0000' bus='0x01' "
       "slot='0x0' function='0x8'/></source></hostdev></devices></domain>",
       "without a valid"},
      {"<!DOCTYPE d [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
       "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><domain><vcpu>&c;</vcpu></domain>",
       "does not parse"},  // libvirtd never writes a DOCTYPE: any is refused
      {"<!DOCTYPE domain [<!ENTITY n \"vm\">]><domain><name>&n;</name></domain>",
       "document type declaration"},
  };
  for (const auto& b : bad) {
    Description d;
    std::string err;
    INFO(b.xml);
    CHECK_FALSE(read_description(b.xml, d, err));
    CHECK_THAT(err, Catch::Contains(b.says));
  }
  std::string many = "<domain><devices>";
  for (size_t i = 0; i <= kMaxHostdevs; i++)
    many += "<hostdev mode='subsystem' type='pci'><source><address domain='0x0000' bus='0x01' slot='0x00' "
            "function='0x0'/></source></hostdev>";
  many += "</devices></domain>";
  Description d;
  std::string err;
  CHECK_FALSE(read_description(many, d, err));
  CHECK_THAT(err, Catch::Contains("more than 256 PCI hostdevs"));
}

TEST_CASE("hook verdict: the agent's answer read as pass, an action's failure, or the agent's refusal") {
  CHECK(judge(R"({"id":1,"ok":true,"event":4,"results":[]})").outcome == Outcome::passed);
  Verdict f = judge(
      R"({"id":1,"ok":false,"event":4,"results":[{"action":"w.echo","rule":"r.yaml:3","ok":true,"attrs":{}},)"
      R"J({"action":"sys.write","rule":"vfio","ok":false,"error":"write x: Permission denied (EACCES)"}]})J");
  CHECK(f.outcome == Outcome::action_failed);
  CHECK(f.message == "sys.write: write x: Permission denied (EACCES) (rule vfio)");
  Verdict q = judge(R"({"id":1,"ok":false,"error":"event queue full"})");
  CHECK(q.outcome == Outcome::agent_error);
  CHECK_THAT(q.message, Catch::Contains("event queue full"));
  CHECK(judge("garbage").outcome == Outcome::agent_error);
  CHECK(judge("[1,2]").outcome == Outcome::agent_error);
  // A result whose "ok" is not a boolean is malformed: it counts as failed
  // (found by the hook_input fuzz target: value("ok", false) threw).
  Verdict m = judge(R"({"id":1,"ok":false,"results":[{"action":"a.b","ok":"x"}]})");
  CHECK(m.outcome == Outcome::action_failed);
  CHECK(m.message == "a.b: failed");
}
