// The service manager's readiness protocol (sd_notify(3)), spoken directly:
// one datagram per message to the AF_UNIX socket named by $NOTIFY_SOCKET (a
// path, or "@name" in the abstract namespace). systemd documents it as a
// stable interface; it is 60 lines here, where libsystemd would be one more
// library linked into a process that loads third-party code for a single
// sendto(). Without NOTIFY_SOCKET every call is a no-op.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace hostlet {

class ServiceNotifier {
 public:
  // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and removes them from
  // the environment (children, such as commands an exec plugin runs, must not
  // talk to the service manager in the agent's name). Call before any thread
  // starts.
  static ServiceNotifier from_environment();
  ServiceNotifier() = default;
  ~ServiceNotifier();
  ServiceNotifier(ServiceNotifier&& o) noexcept;
  ServiceNotifier& operator=(ServiceNotifier&& o) noexcept;
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  bool enabled() const { return fd_ >= 0; }
  // Sends newline-separated assignments, e.g. "READY=1\nSTATUS=...". Never
  // blocks; a failure is logged once. Returns whether the datagram went out.
  bool send(std::string_view state);
  // "RELOADING=1" with MONOTONIC_USEC, as Type=notify-reload wants.
  bool reloading();
  // The watchdog interval the service manager asked for (0: none).
  uint64_t watchdog_usec() const { return watchdog_usec_; }

 private:
  int fd_ = -1;
  sockaddr_un addr_{};
  socklen_t addr_len_ = 0;
  uint64_t watchdog_usec_ = 0;
  bool warned_ = false;
};

}  // namespace hostlet
