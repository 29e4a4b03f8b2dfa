// The shipped VFIO and hugepages example (etc/examples/vfio-hugepages.yaml),
// as a conf.d fragment of a real agent, driven by hostlet-hook run as
// libvirtd runs it, against a temporary tree laid out like /sys for two PCI
// devices (one bound to a driver, one without). inotify records every file
// closed after writing, in order: exactly the expected files are written,
// each device's steps in their order.
#include <catch2/catch.hpp>

#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "e2e.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using hostlet::test::Agent;
using hostlet::test::env_path;
using hostlet::test::Run;
using hostlet::test::TempDir;

namespace {

const char* kDev0 = "0000:06:02.0";  // bound to nvme
const char* kDev1 = "0000:07:00.1";  // no driver

std::string guest_xml() {
  return "<domain type='kvm'><name>gpu-vm</name><uuid>7a1c2d5e-0000-4000-8000-000000000001</uuid>"
         "<memory unit='KiB'>2097152</memory>"
         "<memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages></memoryBacking>"
         "<vcpu placement='static'>4</vcpu><devices>"
         "<hostdev mode='subsystem' type='pci' managed='no'><source>"
         "<address domain='0x0000' bus='0x06' slot='0x02' function='0x0'/></source></hostdev>"
         "<hostdev mode='subsystem' type='pci' managed='no'><source>"
         "<address domain='0x0000' bus='0x07' slot='0x00' function='0x1'/></source></hostdev>"
         "</devices></domain>";
}

// Records IN_CLOSE_WRITE of the watched directories, as "DIR-LABEL/NAME".
class Writes {
 public:
  Writes() : fd_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) { REQUIRE(fd_ >= 0); }
  ~Writes() { close(fd_); }
  void watch(const std::string& dir, const std::string& label) {
    int wd = inotify_add_watch(fd_, dir.c_str(), IN_CLOSE_WRITE);
    REQUIRE(wd >= 0);
    labels_[wd] = label;
  }
  // Every write since the last call.
  std::vector<std::string> take() {
    std::vector<std::string> out;
    alignas(inotify_event) char buf[65536];
    ssize_t n;
    while ((n = read(fd_, buf, sizeof buf)) > 0) {
      for (char* p = buf; p < buf + n;) {
        auto* e = reinterpret_cast<inotify_event*>(p);
        out.push_back(labels_[e->wd] + "/" + (e->len ? e->name : ""));
        p += sizeof(inotify_event) + e->len;
      }
    }
    return out;
  }

 private:
  int fd_;
  std::map<int, std::string> labels_;
};

size_t index_of(const std::vector<std::string>& v, const std::string& s) {
  return static_cast<size_t>(std::find(v.begin(), v.end(), s) - v.begin());
}

std::string content(const std::string& path) { return hostlet::test::read_file(path); }

}  // namespace

TEST_CASE("vfio example: prepare binds each hostdev to vfio-pci in order and reserves hugepages; release undoes it") {
  TempDir dir;
  const std::string sys = dir / "sys";
  const std::string pci = "devices/pci0000:00/0000:00:01.0/";
  // Two devices under /sys/devices, linked from bus/pci/devices as the kernel does.
  for (const char* dev : {kDev0, kDev1}) {
    dir.write("sys/" + pci + dev + "/driver_override", "(null)\n");
    dir.write("sys/" + pci + dev + "/vendor", "0x10de\n");
  }
  for (const char* drv : {"nvme", "vfio-pci"}) {
    dir.write(std::string("sys/bus/pci/drivers/") + drv + "/unbind", "");
    dir.write(std::string("sys/bus/pci/drivers/") + drv + "/bind", "");
  }
  dir.write("sys/bus/pci/drivers_probe", "");
  REQUIRE(::mkdir((sys + "/bus/pci/devices").c_str(), 0755) == 0);
  for (const char* dev : {kDev0, kDev1})
    REQUIRE(::symlink(("../../../" + pci + dev).c_str(), (sys + "/bus/pci/devices/" + dev).c_str()) == 0);
  const std::string driver0 = sys + "/" + pci + kDev0 + "/driver";
  REQUIRE(::symlink("../../../../bus/pci/drivers/nvme", driver0.c_str()) == 0);
  dir.write("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n");
  dir.write("sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "0\n");

  // The example as shipped, its root moved to the temporary tree.
  std::string example = hostlet::test::read_file(env_path("HOSTLET_SOURCE_ROOT") + "/etc/examples/vfio-hugepages.yaml");
  const std::string root_line = "      root: /sys\n";
  REQUIRE(example.find(root_line) != std::string::npos);
  example.replace(example.find(root_line), root_line.size(), "      root: \"" + sys + "\"\n");
  REQUIRE(::mkdir((dir / "conf.d").c_str(), 0755) == 0);
  dir.write("conf.d/60-vfio.yaml", example);

  Agent agent(dir, "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"
                   "plugins:\n"
                   "  - {name: notify, plugin: unixsock, config: {socket: \"@DIR@/notify.sock\", mode: \"0600\"}}\n");
  REQUIRE(agent.start());

  Writes writes;
  writes.watch(sys + "/" + pci + kDev0, "dev0");
  writes.watch(sys + "/" + pci + kDev1, "dev1");
  writes.watch(sys + "/bus/pci/drivers/nvme", "nvme");
  writes.watch(sys + "/bus/pci/drivers/vfio-pci", "vfio-pci");
  writes.watch(sys + "/bus/pci", "pci");
  writes.watch(sys + "/kernel/mm/hugepages/hugepages-2048kB", "hp2M");
  writes.watch(sys + "/kernel/mm/hugepages/hugepages-1048576kB", "hp1G");

  ::mkdir((dir / "hooks").c_str(), 0755);
  const std::string qemu = dir / "hooks/qemu";
  REQUIRE(::symlink((env_path("HOSTLET_BUILD_ROOT") + "/hook/hostlet-hook").c_str(), qemu.c_str()) == 0);
  const std::string xml = dir.write("gpu-vm.xml", guest_xml());
  auto hook = [&](const std::string& op, const std::string& sub) {
    return hostlet::test::run({"/bin/sh", "-c", "exec \"$0\" \"$@\" < \"$HOOK_STDIN\"", qemu, "gpu-vm", op, sub, "-"},
                              60s, {{"HOOK_STDIN", xml}, {"HOSTLET_NOTIFY_SOCKET", dir / "notify.sock"},
                                    {"HOSTLET_HOOK_CONFIG", dir / "none.conf"}});
  };

  Run prepare = hook("prepare", "begin");
  INFO(prepare.err << agent.log());
  REQUIRE(prepare.exit_code == 0);
  std::vector<std::string> w = writes.take();
  INFO("writes: " << Catch::Detail::stringify(w));
  // Exactly these files: each device's override, dev0's driver's unbind
  // (dev1 has no driver: skipped), drivers_probe, the pool.
  // Unique names: inotify merges two identical events in a row (the two
  // devices' drivers_probe writes when nothing came between them).
  auto unique_sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
  };
  std::vector<std::string> sorted = unique_sorted(w);
  const std::vector<std::string> bind_writes = {"dev0/driver_override", "dev1/driver_override", "hp2M/nr_hugepages",
                                                "nvme/unbind", "pci/drivers_probe"};
  CHECK(sorted == bind_writes);
  // dev0: override, then unbind, then a probe after both; dev1: override before a probe.
  CHECK(index_of(w, "dev0/driver_override") < index_of(w, "nvme/unbind"));
  size_t last_probe = static_cast<size_t>(std::find(w.rbegin(), w.rend(), "pci/drivers_probe").base() - w.begin()) - 1;
  CHECK(index_of(w, "nvme/unbind") < last_probe);
  CHECK(index_of(w, "dev1/driver_override") < last_probe);
  CHECK(content(sys + "/" + pci + kDev0 + "/driver_override") == "vfio-pci");
  CHECK(content(sys + "/" + pci + kDev1 + "/driver_override") == "vfio-pci");
  CHECK(content(sys + "/bus/pci/drivers/nvme/unbind") == kDev0);
  CHECK(content(sys + "/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages") == "1024");

  // The kernel would now have bound dev0 to vfio-pci.
  REQUIRE(::unlink(driver0.c_str()) == 0);
  REQUIRE(::symlink("../../../../bus/pci/drivers/vfio-pci", driver0.c_str()) == 0);
  Run release = hook("release", "end");
  INFO(release.err);
  REQUIRE(release.exit_code == 0);
  w = writes.take();
  sorted = unique_sorted(w);
  const std::vector<std::string> unbind_writes = {"dev0/driver_override", "dev1/driver_override", "hp2M/nr_hugepages",
                                                  "pci/drivers_probe", "vfio-pci/unbind"};
  CHECK(sorted == unbind_writes);
  CHECK(index_of(w, "dev0/driver_override") < index_of(w, "vfio-pci/unbind"));
  CHECK(content(sys + "/" + pci + kDev0 + "/driver_override") == "\n");
  CHECK(content(sys + "/bus/pci/drivers/vfio-pci/unbind") == kDev0);
  CHECK(content(sys + "/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages") == "0");

  // A step that fails stops its sequence, names itself, and vetoes the start:
  // here dev0's override cannot be written (a directory stands in its place).
  const std::string override0 = sys + "/" + pci + kDev0 + "/driver_override";
  REQUIRE(::unlink(override0.c_str()) == 0);
  REQUIRE(::mkdir(override0.c_str(), 0755) == 0);
  Run vetoed = hook("prepare", "begin");
  CHECK(vetoed.exit_code == 1);
  CHECK_THAT(vetoed.err, Catch::Contains("vfio.write_seq: step 0: write " + sys + "/bus/pci/devices/" + kDev0 +
                                         "/driver_override") &&
                             Catch::Contains("(nothing written before it)") && Catch::Contains("rule vfio-bind-0"));
  w = writes.take();
  CHECK(std::count(w.begin(), w.end(), "vfio-pci/unbind") == 0);  // dev0's later steps did not run

  // The allow-list holds for every step: a step outside it is refused before any file is opened.
  Run r = agent.ctl({"call", "vfio.write_seq", "path.0=bus/pci/devices/" + std::string(kDev1) + "/driver_override",
                     "value.0=vfio-pci", "path.1=bus/pci/devices/" + std::string(kDev1) + "/vendor", "value.1=0x0",
                     "missing_ok.1=true"});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err + r.out, Catch::Contains("step 1: write") && Catch::Contains("not writable") &&
                                Catch::Contains("written before it: " + sys + "/bus/pci/devices/" + kDev1));
  CHECK(content(sys + "/" + pci + kDev1 + "/vendor") == "0x10de\n");
  agent.stop();
}
