// The NETLINK_KOBJECT_UEVENT socket: open, bind, size the receive buffer,
// receive one datagram with its sender. No host API here, so tests use it
// directly against the real kernel.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace hostlet::uevent {

struct SocketOptions {
  uint32_t groups = 1;        // multicast group mask: 1 = kernel, 2 = udevd ("libudev" format)
  int64_t rcvbuf = 4 << 20;   // bytes; SO_RCVBUFFORCE (needs CAP_NET_ADMIN), else SO_RCVBUF (capped by rmem_max)
  bool passcred = false;      // SO_PASSCRED, to check the uid of udevd's messages
};

struct OpenedSocket {
  int fd = -1;            // non-blocking, close-on-exec; the caller closes it
  int err = 0;            // negative errno when fd < 0
  std::string error;      // what failed, when fd < 0
  int rcvbuf = 0;         // effective SO_RCVBUF as the kernel reports it
  bool forced = false;    // SO_RCVBUFFORCE worked
};

OpenedSocket open_socket(const SocketOptions& opts);

enum class RecvStatus {
  message,   // a datagram of `len` bytes is in the buffer (len may exceed capacity: see truncated)
  again,     // nothing to read (EAGAIN)
  overflow,  // ENOBUFS: the kernel dropped messages because the receive buffer was full
  error,     // any other error; err holds it
};

struct Received {
  RecvStatus status = RecvStatus::again;
  size_t len = 0;           // the datagram's real length (MSG_TRUNC), even when > capacity
  bool truncated = false;   // len > capacity: only capacity bytes are in the buffer
  uint32_t sender_pid = 0;  // nl_pid of the sender: 0 = the kernel
  uint32_t groups = 0;      // nl_groups of the sender address (the group it was sent to)
  bool has_creds = false;   // SCM_CREDENTIALS present (needs passcred)
  uid_t uid = 0;
  int err = 0;              // negative errno for RecvStatus::error
};

// One non-blocking recvmsg into buf[0..cap).
Received receive(int fd, char* buf, size_t cap);

}  // namespace hostlet::uevent
