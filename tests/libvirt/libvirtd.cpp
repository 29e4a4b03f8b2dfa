#include "libvirtd.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>

namespace virt_test {

using namespace std::chrono;
namespace t = hostlet::test;

Libvirtd::Libvirtd(const t::TempDir& dir, const std::string& name, int idle_timeout_s)
    : dir_(dir / name), idle_timeout_s_(idle_timeout_s) {
  for (const char* sub : {"", "/empty", "/run", "/cfg", "/cache"}) std::filesystem::create_directories(dir_ + sub);
  dir.write(name + "/libvirtd.conf", "unix_sock_dir = \"" + dir_ + "\"\n" +
                                         "auth_unix_rw = \"none\"\n"
                                         "auth_unix_ro = \"none\"\n"
                                         "log_outputs = \"3:file:" + dir_ + "/libvirtd.log\"\n");
}

Libvirtd::~Libvirtd() {
  if (proc_) {
    proc_->signal(SIGCONT);  // a stopped daemon would not see SIGTERM
    proc_->stop(SIGTERM, seconds(10));
  }
}

bool Libvirtd::start(milliseconds timeout) {
  if (running()) return true;
  std::filesystem::remove(socket());  // a killed daemon leaves its socket behind
  proc_ = std::make_unique<t::Process>(
      std::vector<std::string>{"libvirtd", "-f", dir_ + "/libvirtd.conf", "-p", dir_ + "/libvirtd.pid", "-t",
                               std::to_string(idle_timeout_s_)},
      std::map<std::string, std::string>{{"LIBVIRT_DRIVER_DIR", dir_ + "/empty"},
                                         {"XDG_RUNTIME_DIR", dir_ + "/run"},
                                         {"XDG_CONFIG_HOME", dir_ + "/cfg"},
                                         {"XDG_CACHE_HOME", dir_ + "/cache"},
                                         {"HOME", dir_}});
  return t::wait_until(
             [&] {
               if (!proc_->running()) return true;
               t::LineClient c;
               return c.connect(socket());
             },
             timeout) &&
         proc_->running();
}

void Libvirtd::kill9() {
  if (!proc_) return;
  proc_->signal(SIGKILL);
  proc_->wait(seconds(10));
}

bool Libvirtd::stop() {
  if (!proc_) return true;
  proc_->signal(SIGCONT);
  auto st = proc_->stop(SIGTERM, seconds(10));
  return st.has_value();
}

void Libvirtd::signal(int sig) {
  if (proc_) proc_->signal(sig);
}

bool Libvirtd::running() const { return proc_ && proc_->running(); }

pid_t Libvirtd::pid() const { return proc_ ? proc_->pid() : -1; }

std::string Libvirtd::log() const {
  return t::read_file(dir_ + "/libvirtd.log") + (proc_ ? proc_->err() : std::string());
}

std::string domain_name(size_t i) {
  char b[32];
  std::snprintf(b, sizeof b, "vm-%04zu", i);
  return b;
}

std::string domain_uuid(size_t i) {
  char b[48];
  std::snprintf(b, sizeof b, "00000000-0000-0000-0000-%012zu", i);
  return b;
}

std::string node_xml(size_t n, size_t running, bool devices) {
  std::string x =
      "<node>\n"
      "  <cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>"
      "<cores>2</cores><threads>1</threads><active>2</active></cpu>\n"
      "  <memory>8388608</memory>\n";
  x.reserve(x.size() + n * 330);
  for (size_t i = 1; i <= n; i++) {
    x += "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>";
    x += "<name>" + domain_name(i) + "</name><uuid>" + domain_uuid(i) + "</uuid>";
    x += "<memory>65536</memory><vcpu>" + std::to_string(devices ? 1 + i % 4 : 1) + "</vcpu><os><type>hvm</type></os>";
    if (devices) {
      char mac[32];
      std::snprintf(mac, sizeof mac, "52:54:00:%02zx:%02zx:%02zx", (i >> 16) & 255, (i >> 8) & 255, i & 255);
      x += "<devices><disk type='file' device='disk'><source file='/var/lib/hostlet-test/" + domain_name(i) +
           ".img'/><target dev='vda' bus='virtio'/></disk><interface type='bridge'><source bridge='br0'/><mac address='" +
           mac + "'/></interface></devices>";
    }
    if (i > running) x += "<test:runstate>5</test:runstate>";
    x += "</domain>\n";
  }
  x += "</node>\n";
  return x;
}

std::string domain_xml(const std::string& name) {
  return "<domain type='test'><name>" + name +
         "</name><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>";
}

}  // namespace virt_test
