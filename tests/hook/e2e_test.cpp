// hostlet-hook invoked as libvirtd invokes it (argv, the domain XML from a
// private libvirtd's `virsh dumpxml` on stdin) against the real agent running
// rules that succeed, fail, or outlast the hook's deadline; and with no agent.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "e2e.hpp"
#include "events.hpp"
#include "libvirtd.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using hostlet::test::Agent;
using hostlet::test::base_config;
using hostlet::test::EventStream;
using hostlet::test::Run;
using hostlet::test::TempDir;

namespace {

// A VFIO guest as a user would define it; names vary per test domain.
std::string vfio_domain(const std::string& name) {
  return "<domain type='test'><name>" + name + "</name><memory unit='GiB'>2</memory>"
         "<memoryBacking><hugepages><page size='2' unit='M'/></hugepages></memoryBacking>"
         "<vcpu placement='static' cpuset='2-5'>4</vcpu><os><type>hvm</type></os><devices>"
         "<hostdev mode='subsystem' type='pci' managed='no'><source>"
         "<address domain='0x0000' bus='0x06' slot='0x02' function='0x0'/></source></hostdev>"
         "<hostdev mode='subsystem' type='pci' managed='no'><source>"
         "<address domain='0x0000' bus='0x07' slot='0x00' function='0x1'/></source></hostdev>"
         "</devices></domain>";
}

struct Hooks {
  TempDir& dir;
  std::string qemu;  // DIR/hooks/qemu -> hostlet-hook, as installed

  explicit Hooks(TempDir& d) : dir(d) {
    ::mkdir((d / "hooks").c_str(), 0755);
    qemu = d / "hooks/qemu";
    REQUIRE(::symlink((hostlet::test::env_path("HOSTLET_BUILD_ROOT") + "/hook/hostlet-hook").c_str(), qemu.c_str()) == 0);
  }

  // Runs the hook with `stdin_file` on stdin, the way libvirtd does (its
  // environment holds little; the test adds where the socket and config are).
  Run run(const std::vector<std::string>& args, const std::string& stdin_file, const std::string& config_text,
          const std::string& socket) {
    std::string conf = dir.write("hook.conf", config_text);
    std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" < \"$HOOK_STDIN\"", qemu};
    argv.insert(argv.end(), args.begin(), args.end());
    return hostlet::test::run(argv, 60s,
                              {{"HOOK_STDIN", stdin_file}, {"HOSTLET_HOOK_CONFIG", conf}, {"HOSTLET_NOTIFY_SOCKET", socket}});
  }
};

// Defines the domain in the private libvirtd and returns the file holding
// `virsh dumpxml` of it. One virsh run: the test driver forgets what was
// defined once its last connection closes.
std::string dumpxml(virt_test::Libvirtd& d, const std::string& name, TempDir& dir) {
  std::string def = dir.write(name + ".def.xml", vfio_domain(name));
  Run x = hostlet::test::run({"virsh", "-q", "-c", d.uri(), "define " + def + "; dumpxml " + name});
  INFO(x.err);
  REQUIRE(x.exit_code == 0);
  size_t at = x.out.find("<domain");
  REQUIRE(at != std::string::npos);
  REQUIRE(x.out.find("<hostdev") != std::string::npos);
  return dir.write(name + ".xml", x.out.substr(at));
}

// The <uuid> libvirt gave the domain.
std::string uuid_in(const std::string& xml_file) {
  std::string x = hostlet::test::read_file(xml_file);
  size_t a = x.find("<uuid>"), b = x.find("</uuid>");
  REQUIRE(a != std::string::npos);
  REQUIRE(b != std::string::npos);
  return x.substr(a + 6, b - a - 6);
}

const char* kRules =
    "  - on: {source: notify, type: libvirt.hook.qemu.prepare, attrs: {domain: \"ok-*\"}}\n"
    "    do: w.echo\n"
    "    with: {name: \"${hostdev.0}\"}\n"
    "  - name: vfio\n"
    "    on: {source: notify, type: \"libvirt.hook.qemu.*\", attrs: {domain: \"fail-*\"}}\n"
    "    do: w.fail\n"
    "    with: {message: \"cannot bind ${hostdev.1} to vfio-pci\"}\n"
    "  - on: {source: notify, type: libvirt.hook.qemu.prepare, attrs: {domain: \"slow-*\"}}\n"
    "    do: w.work\n"
    "    with: {ms: \"3000\"}\n";

}  // namespace

TEST_CASE("hostlet-hook: rules that pass, fail and outlast the deadline decide the exit status") {
  TempDir dir;
  virt_test::Libvirtd libvirtd(dir);
  REQUIRE(libvirtd.start());
  const std::string ok_xml = dumpxml(libvirtd, "ok-vm", dir);
  const std::string fail_xml = dumpxml(libvirtd, "fail-vm", dir);
  const std::string slow_xml = dumpxml(libvirtd, "slow-vm", dir);
  const std::string ok_uuid = uuid_in(ok_xml);
  REQUIRE(ok_uuid.size() == 36);

  Agent agent(dir, base_config("  - {name: notify, plugin: unixsock, config: {socket: \"@DIR@/notify.sock\"}}\n",
                               kRules));
  REQUIRE(agent.start());
  const std::string sock = dir / "notify.sock";
  Hooks hooks(dir);
  EventStream events(agent, "libvirt.hook.*");

  SECTION("a rule that answers ok: exit 0, and the event carries what libvirt said and the XML's fields") {
    Run r = hooks.run({"ok-vm", "prepare", "begin", "-"}, ok_xml, "", sock);
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    auto e = events.wait_for([](const nlohmann::json& e) { return e["attrs"].value("domain", "") == "ok-vm"; });
    REQUIRE(e);
    const auto& a = (*e)["attrs"];
    CHECK((*e)["source"] == "notify");
    CHECK((*e)["type"] == "libvirt.hook.qemu.prepare");
    CHECK(a["operation"] == "prepare");
    CHECK(a["sub_operation"] == "begin");
    CHECK(a["extra"] == "-");
    CHECK(a["uuid"] == ok_uuid);
    CHECK(a["hostdevs"] == "0000:06:02.0 0000:07:00.1");
    CHECK(a["hostdev_count"] == "2");
    CHECK(a["hostdev.0"] == "0000:06:02.0");
    CHECK(a["memory_kib"] == "2097152");
    CHECK(a["hugepage_kib"] == "2048");
    CHECK(a["hugepages"] == "1024");
    CHECK(a["vcpus"] == "4");
    CHECK(a["cpuset"] == "2-5");
    CHECK(e->dump().find("<domain") == std::string::npos);
  }

  SECTION("a failing action vetoes prepare (exit 1, its message on stderr) but not started") {
    Run r = hooks.run({"fail-vm", "prepare", "begin", "-"}, fail_xml, "", sock);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Contains("libvirt.hook.qemu.prepare fail-vm: w.fail: cannot bind 0000:07:00.1 to vfio-pci (rule vfio)"));
    Run s = hooks.run({"fail-vm", "started", "begin", "-"}, fail_xml, "", sock);
    CHECK(s.exit_code == 0);
    CHECK_THAT(s.err, Catch::Contains("cannot bind 0000:07:00.1"));
  }

  SECTION("no answer by the deadline: fail-open by default, fail-closed when configured") {
    Run r = hooks.run({"slow-vm", "prepare", "begin", "-"}, slow_xml, "timeout = 300ms\n", sock);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.err, Catch::Contains("no answer within 300 ms") && Catch::Contains("letting it pass"));
    Run c = hooks.run({"slow-vm", "prepare", "begin", "-"}, slow_xml, "timeout = 300ms\non_unreachable = closed\n", sock);
    CHECK(c.exit_code == 1);
    CHECK_THAT(c.err, Catch::Contains("refusing the operation (on_unreachable = closed)"));
    // The agent still serves the next VM at once.
    CHECK(hooks.run({"ok-vm", "prepare", "begin", "-"}, ok_xml, "", sock).exit_code == 0);
  }

  SECTION("malformed XML and a huge stdin: a clear error, no event") {
    std::string bad = dir.write("bad.xml", "<domain><name>ok-bad</name><devices><hostdev");
    Run r = hooks.run({"ok-bad", "prepare", "begin", "-"}, bad, "", sock);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.err, Catch::Contains("XML on stdin does not parse"));
    Run c = hooks.run({"ok-bad", "prepare", "begin", "-"}, bad, "on_unreachable = closed\n", sock);
    CHECK(c.exit_code == 1);
    // 100 MB on stdin: refused past max_stdin, without reading the rest.
    std::vector<std::string> argv = {"/bin/sh", "-c",
                                     "head -c 100000000 /dev/zero | \"$0\" \"$@\"", hooks.qemu, "ok-huge", "prepare",
                                     "begin", "-"};
    Run h = hostlet::test::run(argv, 60s, {{"HOSTLET_NOTIFY_SOCKET", sock},
                                           {"HOSTLET_HOOK_CONFIG", dir.write("h.conf", "max_stdin = 1MiB\n")}});
    CHECK(h.exit_code == 0);
    CHECK_THAT(h.err, Catch::Contains("stdin holds more than max_stdin (1048576 bytes)"));
    // A good invocation after them arrives, and is the only event the stream saw.
    REQUIRE(hooks.run({"ok-vm", "prepare", "begin", "-"}, ok_xml, "", sock).exit_code == 0);
    REQUIRE(events.wait_for([](const nlohmann::json& e) { return e["attrs"].value("domain", "") == "ok-vm"; }));
    CHECK(events.events().size() == 1);
  }

  SECTION("a broken hook.conf refuses vetoable operations and names the line") {
    Run r = hooks.run({"ok-vm", "prepare", "begin", "-"}, ok_xml, "timeout = soon\n", sock);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Catch::Contains("hook.conf: line 1: timeout must be"));
    Run s = hooks.run({"ok-vm", "stopped", "end", "-"}, ok_xml, "timeout = soon\n", sock);
    CHECK(s.exit_code == 0);
  }
  agent.stop();
}

TEST_CASE("hostlet-hook: the agent not running: fail-open, or fail-closed for vetoable operations") {
  TempDir dir;
  Hooks hooks(dir);
  std::string xml = dir.write("d.xml", vfio_domain("vm1"));
  Run r = hooks.run({"vm1", "prepare", "begin", "-"}, xml, "", dir / "none.sock");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.err, Catch::Contains("connect " + dir / "none.sock" + ": No such file or directory") &&
                        Catch::Contains("letting it pass"));
  Run c = hooks.run({"vm1", "start", "begin", "-"}, xml, "on_unreachable = closed\n", dir / "none.sock");
  CHECK(c.exit_code == 1);
  Run s = hooks.run({"vm1", "release", "end", "-"}, xml, "on_unreachable = closed\n", dir / "none.sock");
  CHECK(s.exit_code == 0);
  // Not run as libvirt runs it: usage, exit 2.
  Run u = hostlet::test::run({hostlet::test::env_path("HOSTLET_BUILD_ROOT") + "/hook/hostlet-hook"});
  CHECK(u.exit_code == 2);
  CHECK_THAT(u.err, Catch::Contains("/etc/libvirt/hooks/qemu"));
}
