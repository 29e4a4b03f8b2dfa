#include "sd_notify.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <utility>

#include "log.hpp"

namespace hostlet {

ServiceNotifier ServiceNotifier::from_environment() {
  ServiceNotifier n;
  const char* sock = getenv("NOTIFY_SOCKET");
  const char* wd_usec = getenv("WATCHDOG_USEC");
  const char* wd_pid = getenv("WATCHDOG_PID");
  if (wd_usec) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = strtoull(wd_usec, &end, 10);
    bool for_us = !wd_pid || strtol(wd_pid, nullptr, 10) == static_cast<long>(getpid());
    if (errno == 0 && end && *end == '\0' && v > 0 && for_us) n.watchdog_usec_ = v;
  }
  if (sock && *sock && (sock[0] == '/' || sock[0] == '@') && strlen(sock) < sizeof n.addr_.sun_path) {
    n.addr_.sun_family = AF_UNIX;
    size_t len = strlen(sock);
    memcpy(n.addr_.sun_path, sock, len);
    if (sock[0] == '@') n.addr_.sun_path[0] = '\0';  // abstract: no trailing NUL counted
    n.addr_len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + (sock[0] == '/' ? 1 : 0));
    n.fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n.fd_ < 0) log(Level::Warn, "hostlet", "NOTIFY_SOCKET %s: socket: %s", sock, strerror(errno));
  } else if (sock && *sock) {
    log(Level::Warn, "hostlet", "NOTIFY_SOCKET '%s' is not a socket path; not notifying the service manager", sock);
  }
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  return n;
}

ServiceNotifier::~ServiceNotifier() {
  if (fd_ >= 0) close(fd_);
}

ServiceNotifier::ServiceNotifier(ServiceNotifier&& o) noexcept { *this = std::move(o); }

ServiceNotifier& ServiceNotifier::operator=(ServiceNotifier&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    addr_ = o.addr_;
    addr_len_ = o.addr_len_;
    watchdog_usec_ = o.watchdog_usec_;
    warned_ = o.warned_;
  }
  return *this;
}

bool ServiceNotifier::send(std::string_view state) {
  if (fd_ < 0) return false;
  ssize_t r = sendto(fd_, state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                     reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
  if (r == static_cast<ssize_t>(state.size())) return true;
  if (!warned_) {
    warned_ = true;
    log(Level::Warn, "hostlet", "notifying the service manager failed: %s (further failures not logged)",
        r < 0 ? strerror(errno) : "short write");
  }
  return false;
}

bool ServiceNotifier::reloading() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec = static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
  return send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

}  // namespace hostlet
