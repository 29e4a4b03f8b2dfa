// uevent: the kernel's hotplug events (NETLINK_KOBJECT_UEVENT) as hostlet events.
//
// Example configuration:
//
//   plugins:
//     - name: uevent
//       plugin: uevent
//       config:
//         subsystems: [net, block]   # SUBSYSTEM filter, fnmatch patterns; empty/absent = all
//         devtypes: []               # DEVTYPE filter, same rules
//         rcvbuf: 4MiB               # socket receive buffer
//   rules:
//     - on: {source: uevent, type: add, attrs: {SUBSYSTEM: net, INTERFACE: "hl*"}}
//       do: sys.write
//       with: {path: "/sys/class/net/${INTERFACE}/mtu", value: "9000"}
//
// Each kernel message "ACTION@DEVPATH\0KEY=VALUE\0..." becomes an event whose
// type is the ACTION (add, remove, change, move, bind, unbind, online,
// offline, ...) and whose attributes are every KEY=VALUE of the message
// (ACTION, DEVPATH, SUBSYSTEM, SEQNUM, INTERFACE, DEVTYPE, ...).
//
// Socket: AF_NETLINK/NETLINK_KOBJECT_UEVENT, non-blocking, bound to `groups`
// (1 = the kernel's group). The receive buffer is set with SO_RCVBUFFORCE
// (works as root) and falls back to SO_RCVBUF, which net.core.rmem_max caps.
// Reading happens on the loop through a fd watch: recvmsg is non-blocking, at
// most `batch` datagrams per wake-up so a flood cannot monopolize the loop.
//
// Trust: a kernel-format message is accepted only from the kernel (sender
// nl_pid 0); anything else is counted as `spoofed` and dropped. udevd's
// re-broadcasts (group 2, "libudev\0" magic) are ignored unless `libudev` is
// true, and then accepted only with SCM_CREDENTIALS uid 0.
//
// Losses are reported, never silent: recvmsg failing with ENOBUFS (the
// kernel dropped messages because the buffer was full) publishes
// `uevent.overflow`; a SEQNUM jump publishes `uevent.lost {from, to, count}`.
// The kernel numbers all uevents with one counter, so a gap can also mean
// events that were sent only to another network namespace (devices moved into
// a container); treat `uevent.lost` as "may have missed these".
//
// Malformed messages (no '@' header, header not matching ACTION/DEVPATH, no
// final NUL, oversized, entries without '=', duplicate keys, bad SEQNUM) are
// dropped, counted by reason and logged at most a few times a minute.
// Values that are not valid UTF-8 are passed on with U+FFFD replacements.
// Counters: the `stats` action.
#include <hostlet/plugin.hpp>

#include <unistd.h>

#include <cinttypes>
#include <map>
#include <string>
#include <vector>

#include "netlink.hpp"
#include "parser.hpp"

namespace hostlet::uevent {
namespace {

const hostlet_config_key kConfig[] = {
    {.key = "groups", .type = HOSTLET_CONFIG_INT, .default_value = "1",
     .description = "netlink multicast group mask to bind: 1 = kernel uevents, 2 = udevd's re-broadcasts",
     .min = 1, .max = 0xffffffffLL, .flags = 0},
    {.key = "rcvbuf", .type = HOSTLET_CONFIG_SIZE, .default_value = "4MiB",
     .description = "socket receive buffer (SO_RCVBUFFORCE as root, else SO_RCVBUF capped by net.core.rmem_max)",
     .min = 4096, .max = 1LL << 30, .flags = 0},
    {.key = "subsystems", .type = HOSTLET_CONFIG_STRING_LIST, .default_value = nullptr,
     .description = "publish only events whose SUBSYSTEM matches one of these fnmatch patterns (empty: all)",
     .min = 0, .max = 0, .flags = 0},
    {.key = "devtypes", .type = HOSTLET_CONFIG_STRING_LIST, .default_value = nullptr,
     .description = "publish only events whose DEVTYPE matches one of these patterns (empty: all)",
     .min = 0, .max = 0, .flags = 0},
    {.key = "libudev", .type = HOSTLET_CONFIG_BOOL, .default_value = "false",
     .description = "accept udevd's \"libudev\" messages (needs groups: 2 or 3; sender must be uid 0)",
     .min = 0, .max = 0, .flags = 0},
    {.key = "max_message", .type = HOSTLET_CONFIG_SIZE, .default_value = "16KiB",
     .description = "longer datagrams are dropped as oversized", .min = 512, .max = 1LL << 20, .flags = 0},
    {.key = "batch", .type = HOSTLET_CONFIG_INT, .default_value = "256",
     .description = "most datagrams read per loop wake-up", .min = 1, .max = 65536, .flags = 0},
    {.key = nullptr, .type = HOSTLET_CONFIG_STRING, .default_value = nullptr, .description = nullptr,
     .min = 0, .max = 0, .flags = 0},
};

const hostlet_action_info kActions[] = {
    {"stats", "",
     "counters as attributes: received, published, filtered, malformed, libudev_ignored, spoofed, "
     "overflows, gaps, lost, reordered, dropped, sanitized, recv_errors, last_seqnum, rcvbuf, and "
     "malformed.<reason> per parse error (no_header, no_nul, oversized, bad_entry, ...)"},
    {nullptr, nullptr, nullptr},
};

const hostlet_event_info kEvents[] = {
    {"add", "every KEY=VALUE of the message: ACTION, DEVPATH, SUBSYSTEM, SEQNUM, ...", "a device appeared"},
    {"remove", "as add", "a device went away"},
    {"change", "as add", "a device changed (also: `echo change > .../uevent`)"},
    {"move", "as add, plus DEVPATH_OLD", "a device was renamed or moved"},
    {"bind", "as add, plus DRIVER", "a driver was bound to a device"},
    {"unbind", "as add", "a driver was unbound"},
    {"online", "as add", "a device (e.g. a CPU) went online"},
    {"offline", "as add", "a device went offline"},
    {"uevent.overflow", "overflows (total so far)",
     "recvmsg failed with ENOBUFS: the kernel dropped messages; a uevent.lost follows with the SEQNUM range"},
    {"uevent.lost", "from, to, count (this gap), lost (total so far)",
     "a SEQNUM gap: these messages did not reach the socket"},
    {nullptr, nullptr, nullptr},
};

constexpr uint64_t kLogInterval = 60'000'000'000ULL;  // a few log lines per minute per kind
constexpr unsigned kLogBurst = 5;

struct Counters {
  uint64_t received = 0, published = 0, filtered = 0, malformed = 0, libudev_ignored = 0, spoofed = 0,
           overflows = 0, gaps = 0, lost = 0, dropped = 0, sanitized = 0, recv_errors = 0;
  std::map<std::string, uint64_t> malformed_by_reason;
};

class UeventPlugin final : public hostlet::Plugin {
 public:
  explicit UeventPlugin(Host& host)
      : Plugin(host),
        malformed_log_(kLogInterval, kLogBurst),
        spoof_log_(kLogInterval, kLogBurst),
        loss_log_(kLogInterval, kLogBurst),
        drop_log_(kLogInterval, kLogBurst) {
    sock_.groups = static_cast<uint32_t>(host.integer("groups"));
    sock_.rcvbuf = host.integer("rcvbuf");
    limits_.libudev = host.boolean("libudev");
    sock_.passcred = limits_.libudev;
    limits_.max_message = static_cast<size_t>(host.integer("max_message"));
    batch_ = static_cast<unsigned>(host.integer("batch"));
    filter_.subsystems = host.list("subsystems");
    filter_.devtypes = host.list("devtypes");
    if (limits_.libudev && !(sock_.groups & 2u))
      host.warn("libudev: true has no effect unless groups includes 2 (udevd's group)");
    buf_.resize(limits_.max_message + 1);
    host.action("stats", [this](Call& call) { call.ok(stats()); });
  }

  ~UeventPlugin() override { close_socket(); }

  int start() override {
    OpenedSocket s = open_socket(sock_);
    if (s.fd < 0) throw Error(s.err, s.error);
    fd_ = s.fd;
    rcvbuf_ = s.rcvbuf;
    if (!s.forced && s.rcvbuf < sock_.rcvbuf)
      host().warn("rcvbuf %" PRId64 " requested, kernel gave %d (SO_RCVBUFFORCE refused: not root? raise "
                  "net.core.rmem_max)", sock_.rcvbuf, s.rcvbuf);
    watch_ = host().watch(fd_, HOSTLET_WATCH_READABLE, [this](int, unsigned events) {
      on_readable();
      // After an overflow the socket reports POLLERR (sk_err = ENOBUFS) and
      // libuv stops a poll handle that sees POLLERR without POLLPRI; the read
      // above cleared sk_err, so start the watch again or no uevent would
      // ever be read after the first overflow.
      if ((events & HOSTLET_WATCH_ERROR) && fd_ >= 0) rearm();
    });
    host().info("listening for uevents: groups 0x%x, rcvbuf %d%s", sock_.groups, s.rcvbuf,
                s.forced ? " (forced)" : "");
    return 0;
  }

  void stop(std::function<void()> stopped) override {
    close_socket();
    stopped();
  }

 private:
  void close_socket() {
    watch_.close();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  void on_readable() {
    for (unsigned i = 0; i < batch_ && fd_ >= 0; i++) {
      Received r = receive(fd_, buf_.data(), buf_.size());
      switch (r.status) {
        case RecvStatus::again: return;
        case RecvStatus::overflow: on_overflow(); break;
        case RecvStatus::error:
          c_.recv_errors++;
          log_limited(drop_log_, HOSTLET_LOG_ERROR, "recvmsg: %s", hostlet_strerror(r.err));
          return;  // level-triggered: the watch calls again if the socket is still readable
        case RecvStatus::message: on_message(r); break;
      }
    }
  }

  void rearm() {
    int r = watch_.update(HOSTLET_WATCH_READABLE);
    if (r != 0) host().error("cannot re-arm the uevent socket watch: %s", hostlet_strerror(r));
  }

  void on_overflow() {
    c_.overflows++;
    log_limited(loss_log_, HOSTLET_LOG_WARN,
                "receive buffer overflowed (ENOBUFS, %" PRIu64 " so far): uevents were lost; raise rcvbuf",
                c_.overflows);
    publish("uevent.overflow", {{"overflows", std::to_string(c_.overflows)}});
  }

  void on_message(const Received& r) {
    c_.received++;
    if (r.len > limits_.max_message) return malformed(ParseError::oversized, std::to_string(r.len) + " bytes");
    std::string_view msg(buf_.data(), r.len);

    bool udev_format = is_libudev(msg);
    if (udev_format && !limits_.libudev) {
      c_.libudev_ignored++;
      return;
    }
    bool trusted = udev_format ? (r.sender_pid != 0 && r.has_creds && r.uid == 0) : r.sender_pid == 0;
    if (!trusted) {
      c_.spoofed++;
      log_limited(spoof_log_, HOSTLET_LOG_WARN, "dropped a uevent from nl_pid %u (only the kernel%s is trusted)",
                  r.sender_pid, limits_.libudev ? " and uid-0 udevd" : "");
      return;
    }

    ParseResult p = parse(msg, limits_);
    if (!p.ok()) return malformed(p.error, p.detail);
    Uevent& ev = p.event;
    if (ev.sanitized) c_.sanitized++;

    if (!ev.libudev && ev.seqnum) {
      if (auto gap = seq_.observe(*ev.seqnum)) on_gap(*gap);
    }
    if (!filter_.accepts(ev)) {
      c_.filtered++;
      return;
    }
    if (publish(ev.action.c_str(), ev.attrs)) c_.published++;
  }

  void on_gap(const SeqTracker::Gap& gap) {
    c_.gaps++;
    c_.lost += gap.count();
    log_limited(loss_log_, HOSTLET_LOG_WARN, "uevents %" PRIu64 "..%" PRIu64 " (%" PRIu64 ") did not arrive",
                gap.from, gap.to, gap.count());
    publish("uevent.lost", {{"from", std::to_string(gap.from)},
                            {"to", std::to_string(gap.to)},
                            {"count", std::to_string(gap.count())},
                            {"lost", std::to_string(c_.lost)}});
  }

  void malformed(ParseError reason, const std::string& detail) {
    c_.malformed++;
    c_.malformed_by_reason[parse_error_name(reason)]++;
    log_limited(malformed_log_, HOSTLET_LOG_WARN, "dropped a malformed uevent: %s%s%s", parse_error_text(reason),
                detail.empty() ? "" : ": ", detail.c_str());
  }

  bool publish(const char* type, const Attrs& attrs) {
    int r = host().publish(type, attrs);
    if (r == 0) return true;
    c_.dropped++;
    log_limited(drop_log_, HOSTLET_LOG_WARN, "could not publish %s: %s", type, hostlet_strerror(r));
    return false;
  }

  template <class... A>
  void log_limited(RateLimiter& rl, hostlet_log_level level, const char* fmt, A... a) {
    uint64_t suppressed = 0;
    if (!rl.allow(host().now_ns(), &suppressed)) return;
    if (suppressed) host().log(level, "(%" PRIu64 " similar messages suppressed)", suppressed);
    host().log(level, fmt, a...);
  }

  Attrs stats() const {
    Attrs a = {
        {"received", std::to_string(c_.received)},
        {"published", std::to_string(c_.published)},
        {"filtered", std::to_string(c_.filtered)},
        {"malformed", std::to_string(c_.malformed)},
        {"libudev_ignored", std::to_string(c_.libudev_ignored)},
        {"spoofed", std::to_string(c_.spoofed)},
        {"overflows", std::to_string(c_.overflows)},
        {"gaps", std::to_string(c_.gaps)},
        {"lost", std::to_string(c_.lost)},
        {"reordered", std::to_string(seq_.reordered())},
        {"dropped", std::to_string(c_.dropped)},
        {"sanitized", std::to_string(c_.sanitized)},
        {"recv_errors", std::to_string(c_.recv_errors)},
        {"last_seqnum", seq_.last() ? std::to_string(*seq_.last()) : ""},
        {"rcvbuf", std::to_string(rcvbuf_)},
    };
    for (const auto& [reason, n] : c_.malformed_by_reason) a.emplace_back("malformed." + reason, std::to_string(n));
    return a;
  }

  SocketOptions sock_;
  ParseLimits limits_;
  Filter filter_;
  unsigned batch_ = 256;
  int fd_ = -1;
  int rcvbuf_ = 0;
  hostlet::Watch watch_;
  std::vector<char> buf_;
  SeqTracker seq_;
  Counters c_;
  RateLimiter malformed_log_, spoof_log_, loss_log_, drop_log_;
};

}  // namespace
}  // namespace hostlet::uevent

HOSTLET_CPP_PLUGIN(hostlet::uevent::UeventPlugin, "uevent", "0.1.0",
                   "kernel uevents (NETLINK_KOBJECT_UEVENT) as events, with loss detection",
                   hostlet::uevent::kConfig, hostlet::uevent::kActions, hostlet::uevent::kEvents)
