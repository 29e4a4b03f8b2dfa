#include "netlink.hpp"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

namespace hostlet::uevent {

OpenedSocket open_socket(const SocketOptions& opts) {
  OpenedSocket s;
  auto fail = [&](const char* what) {
    s.err = -errno;
    s.error = std::string(what) + ": " + std::strerror(errno);
    if (s.fd >= 0) ::close(s.fd);
    s.fd = -1;
    return s;
  };
  s.fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  if (s.fd < 0) return fail("socket(AF_NETLINK, NETLINK_KOBJECT_UEVENT)");

  int size = opts.rcvbuf > INT_MAX / 2 ? INT_MAX / 2 : static_cast<int>(opts.rcvbuf);
  if (::setsockopt(s.fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) == 0) {
    s.forced = true;
  } else if (::setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0) {
    return fail("setsockopt(SO_RCVBUF)");
  }
  socklen_t len = sizeof s.rcvbuf;
  ::getsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &s.rcvbuf, &len);

  if (opts.passcred) {
    int on = 1;
    if (::setsockopt(s.fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) return fail("setsockopt(SO_PASSCRED)");
  }

  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_pid = 0;  // let the kernel pick our port id
  addr.nl_groups = opts.groups;
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return fail("bind(NETLINK_KOBJECT_UEVENT)");
  return s;
}

Received receive(int fd, char* buf, size_t cap) {
  Received r;
  sockaddr_nl from{};
  iovec iov{buf, cap};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  msghdr msg{};
  msg.msg_name = &from;
  msg.msg_namelen = sizeof from;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;

  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) r.status = RecvStatus::again;
    else if (errno == ENOBUFS) r.status = RecvStatus::overflow;
    else {
      r.status = RecvStatus::error;
      r.err = -errno;
    }
    return r;
  }
  r.status = RecvStatus::message;
  r.len = static_cast<size_t>(n);
  r.truncated = r.len > cap || (msg.msg_flags & MSG_TRUNC);
  if (msg.msg_namelen >= sizeof from && from.nl_family == AF_NETLINK) {
    r.sender_pid = from.nl_pid;
    r.groups = from.nl_groups;
  } else {
    r.sender_pid = UINT32_MAX;  // no usable address: never taken for the kernel
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
      ucred cred;
      std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
      r.has_creds = true;
      r.uid = cred.uid;
    }
  }
  return r;
}

}  // namespace hostlet::uevent
