// Test helpers for the libvirt plugin: a private libvirtd (test driver only,
// no root, no KVM) in a temporary directory, started and stopped by pid, and
// a generator of test-driver node XML with many domains.
#pragma once

#include "support.hpp"

#include <signal.h>

#include <chrono>
#include <memory>
#include <string>

namespace virt_test {

// libvirtd as issue 4 describes it: unix_sock_dir and logs in the directory,
// no authentication, an empty driver dir (no qemu module), exits by itself
// after idle_timeout_s without clients (a safety net for a crashed test).
// Clients use uri(). The destructor SIGKILLs a daemon still running.
class Libvirtd {
 public:
  explicit Libvirtd(const hostlet::test::TempDir& dir, const std::string& name = "libvirtd",
                    int idle_timeout_s = 300);
  ~Libvirtd();
  Libvirtd(const Libvirtd&) = delete;
  Libvirtd& operator=(const Libvirtd&) = delete;

  // Starts the daemon (again, after a stop or kill) and waits until its socket accepts.
  bool start(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void kill9();                 // SIGKILL and reap
  bool stop();                  // SIGTERM; true when it exited
  void pause() { signal(SIGSTOP); }
  void resume() { signal(SIGCONT); }
  void signal(int sig);
  bool running() const;
  pid_t pid() const;

  const std::string& dir() const { return dir_; }
  std::string socket() const { return dir_ + "/libvirt-sock"; }
  std::string uri() const { return "test+unix:///default?socket=" + socket(); }
  std::string log() const;  // libvirtd's log file and stderr

 private:
  std::string dir_;
  int idle_timeout_s_;
  std::unique_ptr<hostlet::test::Process> proc_;
};

// A test-driver node (`test:///ABS/PATH.xml`) with `n` persistent domains
// named vm-0001 ... with uuids 00000000-0000-0000-0000-<12 digits of i>;
// the first `running` are running, the rest shut off. With `devices`, each
// domain has 1 + i % 4 vCPUs, a file disk vda (/var/lib/hostlet-test/NAME.img)
// and an interface on bridge br0, as prometheus-libvirt-exporter labels them.
std::string node_xml(size_t n, size_t running, bool devices = false);
std::string domain_name(size_t i);  // 1-based
std::string domain_uuid(size_t i);

// A minimal domain for the test driver, shut off once defined.
std::string domain_xml(const std::string& name);

}  // namespace virt_test
