// The uevent socket against the real kernel (needs root: writes to
// /sys/.../uevent, SO_RCVBUFFORCE, sending to a netlink multicast group).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "netlink.hpp"
#include "parser.hpp"

using namespace hostlet::uevent;
using namespace std::string_literals;

namespace {

const char* kNullUevent = "/sys/devices/virtual/mem/null/uevent";

bool is_root() {
  if (geteuid() == 0) return true;
  WARN("not root: kernel uevent test skipped");
  return false;
}

std::string random_uuid() {
  std::random_device rd;
  std::mt19937_64 rng(rd());
  const char* hex = "0123456789abcdef";
  std::string u;
  for (int i = 0; i < 32; i++) {
    if (i == 8 || i == 12 || i == 16 || i == 20) u += '-';
    u += hex[rng() % 16];
  }
  return u;
}

// "change UUID" makes the kernel send a synthetic uevent carrying SYNTH_UUID=UUID.
void trigger(const std::string& text) {
  int fd = ::open(kNullUevent, O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
}

struct Socket {
  OpenedSocket s;
  explicit Socket(const SocketOptions& o) : s(open_socket(o)) {}
  ~Socket() {
    if (s.fd >= 0) ::close(s.fd);
  }
};

// Receives until pred(parsed event, raw receive) is true or the timeout passes.
template <class P>
bool receive_until(int fd, P pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  std::vector<char> buf(16 * 1024 + 1);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    for (;;) {
      Received r = receive(fd, buf.data(), buf.size());
      if (r.status == RecvStatus::again) break;
      if (r.status != RecvStatus::message) continue;
      auto parsed = parse(std::string_view(buf.data(), r.len), ParseLimits{});
      if (pred(parsed, r)) return true;
    }
  }
  return false;
}

}  // namespace

TEST_CASE("uevent socket: receives the kernel's change event for /dev/null", "[uevent][kernel]") {
  if (!is_root()) return;
  Socket sock(SocketOptions{});
  REQUIRE(sock.s.fd >= 0);
  CHECK(sock.s.forced);                   // root: SO_RCVBUFFORCE
  CHECK(sock.s.rcvbuf >= (4 << 20));      // the kernel reports double what was set
  CHECK((::fcntl(sock.s.fd, F_GETFL) & O_NONBLOCK) != 0);
  CHECK((::fcntl(sock.s.fd, F_GETFD) & FD_CLOEXEC) != 0);

  std::string uuid = random_uuid();
  trigger("change " + uuid);
  bool seen = receive_until(sock.s.fd, [&](const ParseResult& p, const Received& r) {
    if (!p.ok()) return false;
    const std::string* u = p.event.find("SYNTH_UUID");
    if (!u || *u != uuid) return false;
    CHECK(r.sender_pid == 0);
    CHECK(r.groups == 1);
    CHECK(p.event.action == "change");
    CHECK(p.event.devpath == "/devices/virtual/mem/null");
    CHECK(*p.event.find("SUBSYSTEM") == "mem");
    CHECK(*p.event.find("DEVNAME") == "null");
    CHECK(p.event.seqnum.has_value());
    return true;
  });
  CHECK(seen);
}

TEST_CASE("uevent socket: a full receive buffer reports ENOBUFS, then a SEQNUM gap", "[uevent][kernel]") {
  if (!is_root()) return;
  SocketOptions small;
  small.rcvbuf = 4096;  // the kernel's minimum is a few KiB: a handful of messages
  Socket sock(small);
  REQUIRE(sock.s.fd >= 0);

  const int n = 300;
  for (int i = 0; i < n; i++) trigger("change");

  std::vector<char> buf(16 * 1024 + 1);
  SeqTracker seq;
  int messages = 0, overflows = 0;
  uint64_t lost = 0;
  for (;;) {
    Received r = receive(sock.s.fd, buf.data(), buf.size());
    if (r.status == RecvStatus::again) break;
    if (r.status == RecvStatus::overflow) {
      overflows++;
      continue;
    }
    REQUIRE(r.status == RecvStatus::message);
    auto p = parse(std::string_view(buf.data(), r.len), ParseLimits{});
    REQUIRE(p.ok());
    messages++;
    if (auto g = seq.observe(*p.event.seqnum)) lost += g->count();
  }
  CHECK(overflows >= 1);
  CHECK(messages < n);

  // The loss shows as a gap as soon as the next message arrives.
  std::string uuid = random_uuid();
  trigger("change " + uuid);
  bool seen = receive_until(sock.s.fd, [&](const ParseResult& p, const Received&) {
    if (!p.ok() || !p.event.seqnum) return false;
    if (auto g = seq.observe(*p.event.seqnum)) lost += g->count();
    const std::string* u = p.event.find("SYNTH_UUID");
    return u && *u == uuid;
  });
  REQUIRE(seen);
  CHECK(static_cast<uint64_t>(messages) + lost >= static_cast<uint64_t>(n));
}

TEST_CASE("uevent socket: a message sent from user space carries a non-zero sender pid", "[uevent][kernel]") {
  if (!is_root()) return;
  Socket listener(SocketOptions{});
  REQUIRE(listener.s.fd >= 0);

  int tx = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  REQUIRE(tx >= 0);
  sockaddr_nl dst{};
  dst.nl_family = AF_NETLINK;
  dst.nl_groups = 1;
  std::string uuid = random_uuid();
  std::string fake = "change@/devices/virtual/hostlet-spoof\0ACTION=change\0DEVPATH=/devices/virtual/hostlet-spoof\0"
                     "SUBSYSTEM=hostlet\0SYNTH_UUID="s + uuid + "\0SEQNUM=1\0"s;
  REQUIRE(::sendto(tx, fake.data(), fake.size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) ==
          static_cast<ssize_t>(fake.size()));
  ::close(tx);

  bool seen = receive_until(listener.s.fd, [&](const ParseResult& p, const Received& r) {
    if (!p.ok()) return false;
    const std::string* u = p.event.find("SYNTH_UUID");
    if (!u || *u != uuid) return false;
    CHECK(r.sender_pid != 0);  // what the plugin checks to drop it
    return true;
  });
  CHECK(seen);
}
