// The uevent parser on messages captured from this machine's kernel
// (Debian 12, kernel 6.x; recvmsg on a NETLINK_KOBJECT_UEVENT socket bound to
// group 1) and on malformed payloads.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <string>

#include "parser.hpp"

using namespace hostlet::uevent;
using namespace std::string_literals;

namespace {

// `echo change > /sys/devices/virtual/mem/null/uevent` (161 bytes).
const std::string kChangeNull =
    "change@/devices/virtual/mem/null\0"
    "ACTION=change\0"
    "DEVPATH=/devices/virtual/mem/null\0"
    "SUBSYSTEM=mem\0"
    "SYNTH_UUID=0\0"
    "MAJOR=1\0"
    "MINOR=3\0"
    "DEVNAME=null\0"
    "DEVMODE=0666\0"
    "SEQNUM=820\0"s;

// `ip link add hlcap0 type veth peer name hlcap1` (131 bytes).
const std::string kAddVeth =
    "add@/devices/virtual/net/hlcap1\0"
    "ACTION=add\0"
    "DEVPATH=/devices/virtual/net/hlcap1\0"
    "SUBSYSTEM=net\0"
    "INTERFACE=hlcap1\0"
    "IFINDEX=5\0"
    "SEQNUM=821\0"s;

// Its queue, same moment.
const std::string kAddQueue =
    "add@/devices/virtual/net/hlcap1/queues/rx-0\0"
    "ACTION=add\0"
    "DEVPATH=/devices/virtual/net/hlcap1/queues/rx-0\0"
    "SUBSYSTEM=queues\0"
    "SEQNUM=822\0"s;

// `ip link set hlcap0 name hlcap9`.
const std::string kMoveVeth =
    "move@/devices/virtual/net/hlcap9\0"
    "ACTION=move\0"
    "DEVPATH=/devices/virtual/net/hlcap9\0"
    "SUBSYSTEM=net\0"
    "DEVPATH_OLD=/devices/virtual/net/hlcap0\0"
    "INTERFACE=hlcap9\0"
    "IFINDEX=8\0"
    "SEQNUM=855\0"s;

// `ip link del hlcap9`.
const std::string kRemoveVeth =
    "remove@/devices/virtual/net/hlcap9\0"
    "ACTION=remove\0"
    "DEVPATH=/devices/virtual/net/hlcap9\0"
    "SUBSYSTEM=net\0"
    "INTERFACE=hlcap9\0"
    "IFINDEX=8\0"
    "SEQNUM=858\0"s;

// `echo change > /sys/block/loop0/uevent`: has DEVTYPE.
const std::string kChangeLoop =
    "change@/devices/virtual/block/loop0\0"
    "ACTION=change\0"
    "DEVPATH=/devices/virtual/block/loop0\0"
    "SUBSYSTEM=block\0"
    "SYNTH_UUID=0\0"
    "MAJOR=7\0"
    "MINOR=0\0"
    "DEVNAME=loop0\0"
    "DEVTYPE=disk\0"
    "DISKSEQ=1\0"
    "SEQNUM=862\0"s;

ParseResult parse_default(const std::string& m) { return parse(m, ParseLimits{}); }

// A libudev-format message as udevd sends it on group 2.
std::string libudev_message(const std::string& props) {
  std::string m("libudev\0"s);
  auto put = [&](uint32_t v) { m.append(reinterpret_cast<const char*>(&v), 4); };
  m += "\xfe\xed\xca\xfe"s;  // magic, network order
  put(40);                   // header_size
  put(40);                   // properties_off
  put(static_cast<uint32_t>(props.size()));
  put(0), put(0), put(0), put(0);
  return m + props;
}

}  // namespace

TEST_CASE("uevent parser: captured change on /dev/null", "[uevent][parser]") {
  REQUIRE(kChangeNull.size() == 161);
  auto r = parse_default(kChangeNull);
  REQUIRE(r.ok());
  CHECK(r.event.action == "change");
  CHECK(r.event.devpath == "/devices/virtual/mem/null");
  REQUIRE(r.event.seqnum);
  CHECK(*r.event.seqnum == 820);
  CHECK(r.event.attrs.size() == 9);
  CHECK(r.event.attrs.front() == std::pair<std::string, std::string>("ACTION", "change"));
  CHECK(*r.event.find("SUBSYSTEM") == "mem");
  CHECK(*r.event.find("DEVMODE") == "0666");
  CHECK(r.event.find("DEVTYPE") == nullptr);
  CHECK_FALSE(r.event.libudev);
  CHECK_FALSE(r.event.sanitized);
}

TEST_CASE("uevent parser: captured veth add, queue add, move, remove", "[uevent][parser]") {
  REQUIRE(kAddVeth.size() == 131);
  auto add = parse_default(kAddVeth);
  REQUIRE(add.ok());
  CHECK(add.event.action == "add");
  CHECK(*add.event.find("INTERFACE") == "hlcap1");
  CHECK(*add.event.find("IFINDEX") == "5");

  auto q = parse_default(kAddQueue);
  REQUIRE(q.ok());
  CHECK(*q.event.find("SUBSYSTEM") == "queues");
  CHECK(*q.event.seqnum == 822);

  auto mv = parse_default(kMoveVeth);
  REQUIRE(mv.ok());
  CHECK(mv.event.action == "move");
  CHECK(*mv.event.find("DEVPATH_OLD") == "/devices/virtual/net/hlcap0");

  auto rm = parse_default(kRemoveVeth);
  REQUIRE(rm.ok());
  CHECK(rm.event.action == "remove");
  CHECK(*rm.event.seqnum == 858);
}

TEST_CASE("uevent parser: malformed payloads are rejected with a reason", "[uevent][parser]") {
  struct Case {
    std::string msg;
    ParseError error;
  };
  const Case cases[] = {
      {"", ParseError::empty},
      {"change/devices/virtual/mem/null\0ACTION=change\0DEVPATH=/devices/virtual/mem/null\0"s, ParseError::no_header},
      {"\0"s, ParseError::no_header},
      {"@/devices/x\0ACTION=\0DEVPATH=/devices/x\0"s, ParseError::bad_header},
      {"add@\0ACTION=add\0DEVPATH=\0"s, ParseError::bad_header},
      {"add@devices/x\0ACTION=add\0DEVPATH=devices/x\0"s, ParseError::bad_header},
      {"ADD!@/devices/x\0ACTION=ADD!\0DEVPATH=/devices/x\0"s, ParseError::bad_header},
      {kChangeNull.substr(0, kChangeNull.size() - 1), ParseError::no_nul},
      {"add@/devices/x"s, ParseError::no_nul},
      {"add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0NOEQUALS\0"s, ParseError::bad_entry},
      {"add@/devices/x\0ACTION=add\0\0DEVPATH=/devices/x\0"s, ParseError::bad_entry},
      {"add@/devices/x\0ACTION=add\0=value\0DEVPATH=/devices/x\0"s, ParseError::bad_entry},
      {"add@/devices/x\0ACTION=add\0BAD KEY=1\0DEVPATH=/devices/x\0"s, ParseError::bad_entry},
      {"add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0ACTION=add\0"s, ParseError::duplicate_key},
      {"add@/devices/x\0ACTION=remove\0DEVPATH=/devices/x\0"s, ParseError::header_mismatch},
      {"add@/devices/x\0ACTION=add\0DEVPATH=/devices/y\0"s, ParseError::header_mismatch},
      {"add@/devices/x\0DEVPATH=/devices/x\0"s, ParseError::header_mismatch},
      {"add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0SEQNUM=12a\0"s, ParseError::bad_seqnum},
      {"add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0SEQNUM=\0"s, ParseError::bad_seqnum},
      {"add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0SEQNUM=99999999999999999999999\0"s, ParseError::bad_seqnum},
      {"add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0SEQNUM=-1\0"s, ParseError::bad_seqnum},
      {"libudev\0"s, ParseError::libudev},
  };
  for (const auto& c : cases) {
    INFO("message: " << c.msg.size() << " bytes");
    auto r = parse_default(c.msg);
    CHECK(r.error == c.error);
    CHECK(std::string(parse_error_text(r.error)).size() > 0);
  }
}

TEST_CASE("uevent parser: size and entry limits", "[uevent][parser]") {
  ParseLimits small;
  small.max_message = 100;
  auto r = parse(kChangeNull, small);
  CHECK(r.error == ParseError::oversized);
  CHECK(r.detail.find("161 bytes") != std::string::npos);

  std::string many = "add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0"s;
  for (int i = 0; i < 600; i++) many += "K" + std::to_string(i) + "=v\0"s;
  ParseLimits big;
  big.max_message = 1 << 20;
  CHECK(parse(many, big).error == ParseError::too_many_entries);
}

TEST_CASE("uevent parser: invalid UTF-8 values are replaced, not dropped", "[uevent][parser]") {
  std::string m = "add@/devices/virtual/net/x\0ACTION=add\0DEVPATH=/devices/virtual/net/x\0INTERFACE=a\xff" "b\0"s;
  auto r = parse_default(m);
  REQUIRE(r.ok());
  CHECK(r.event.sanitized);
  CHECK(*r.event.find("INTERFACE") == "a\xEF\xBF\xBD" "b");

  std::string ok = "caf\xC3\xA9";
  CHECK_FALSE(sanitize_utf8(ok));
  std::string bad = "\xC0\xAF\xED\xA0\x80";  // overlong '/', surrogate
  CHECK(sanitize_utf8(bad));
  CHECK(bad.find('\xC0') == std::string::npos);
}

TEST_CASE("uevent parser: libudev messages are ignored unless enabled", "[uevent][parser]") {
  std::string props = "ACTION=add\0DEVPATH=/devices/virtual/net/hl0\0SUBSYSTEM=net\0SEQNUM=900\0USEC_INITIALIZED=1\0"s;
  std::string m = libudev_message(props);
  CHECK(is_libudev(m));
  CHECK(parse_default(m).error == ParseError::libudev);

  ParseLimits on;
  on.libudev = true;
  auto r = parse(m, on);
  REQUIRE(r.ok());
  CHECK(r.event.libudev);
  CHECK(r.event.action == "add");
  CHECK(r.event.devpath == "/devices/virtual/net/hl0");
  CHECK(*r.event.find("USEC_INITIALIZED") == "1");

  std::string bad_magic = m;
  bad_magic[8] = 0;
  CHECK(parse(bad_magic, on).error == ParseError::bad_libudev);
  CHECK(parse(m.substr(0, 20), on).error == ParseError::bad_libudev);
  std::string outside = m;
  uint32_t huge = 1000;
  std::memcpy(&outside[20], &huge, 4);
  CHECK(parse(outside, on).error == ParseError::bad_libudev);
  CHECK(parse(libudev_message("ACTION=add\0"s), on).error == ParseError::header_mismatch);
  CHECK(parse(libudev_message("ACTION=add"), on).error == ParseError::no_nul);
}

TEST_CASE("uevent parser: a libudev DEVPATH must start with '/', as in the kernel's header", "[uevent][parser]") {
  ParseLimits on;
  on.libudev = true;
  for (std::string devpath : {"devices/virtual/net/hl0", ""}) {
    auto r = parse(libudev_message("ACTION=add\0DEVPATH="s + devpath + "\0"s), on);
    CHECK(r.error == ParseError::bad_header);
  }
}

TEST_CASE("uevent filter: subsystems and devtypes, empty accepts all", "[uevent][filter]") {
  auto net = parse_default(kAddVeth).event;
  auto loop = parse_default(kChangeLoop).event;
  Filter all;
  CHECK(all.accepts(net));
  CHECK(all.accepts(loop));

  Filter only_net{{"net"}, {}};
  CHECK(only_net.accepts(net));
  CHECK_FALSE(only_net.accepts(loop));

  Filter glob{{"bl*", "mem"}, {}};
  CHECK(glob.accepts(loop));
  CHECK_FALSE(glob.accepts(net));

  Filter disks{{}, {"disk"}};
  CHECK(disks.accepts(loop));
  CHECK_FALSE(disks.accepts(net));  // no DEVTYPE at all
}

TEST_CASE("uevent seq tracker: gaps, reorders, first message", "[uevent][seq]") {
  SeqTracker t;
  CHECK_FALSE(t.last());
  CHECK_FALSE(t.observe(820));
  CHECK_FALSE(t.observe(821));
  auto gap = t.observe(830);
  REQUIRE(gap);
  CHECK(gap->from == 822);
  CHECK(gap->to == 829);
  CHECK(gap->count() == 8);
  CHECK_FALSE(t.observe(825));  // late: counted, not a gap, last unchanged
  CHECK_FALSE(t.observe(830));  // duplicate
  CHECK(t.reordered() == 2);
  CHECK(*t.last() == 830);
  CHECK_FALSE(t.observe(831));
}

TEST_CASE("uevent rate limiter: burst per interval, counts the suppressed", "[uevent][ratelimit]") {
  RateLimiter rl(1000, 2);
  uint64_t s = 99;
  CHECK(rl.allow(0, &s));
  CHECK(s == 0);
  CHECK(rl.allow(10, &s));
  CHECK_FALSE(rl.allow(20, &s));
  CHECK_FALSE(rl.allow(30, &s));
  CHECK(rl.allow(1000, &s));
  CHECK(s == 2);
}

TEST_CASE("uevent parser: random mutations of real messages never crash", "[uevent][parser][fuzz]") {
  // A cheap in-tree fuzzer: flips, truncates, splices and inserts bytes. The
  // libFuzzer target (uevent_fuzz.cpp, clang only) explores further.
  const std::string seeds[] = {kChangeNull, kAddVeth, kAddQueue, kMoveVeth, kRemoveVeth, kChangeLoop,
                               libudev_message("ACTION=add\0DEVPATH=/x\0SEQNUM=1\0"s)};
  std::mt19937 rng(12345);
  ParseLimits limits;
  limits.libudev = true;
  limits.max_message = 512;
  size_t ok = 0;
  for (int i = 0; i < 200000; i++) {
    std::string m = seeds[rng() % std::size(seeds)];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !m.empty(); e++) {
      size_t pos = rng() % m.size();
      switch (rng() % 5) {
        case 0: m[pos] = static_cast<char>(rng()); break;
        case 1: m.resize(pos); break;
        case 2: m.insert(pos, 1, static_cast<char>(rng() % 4 == 0 ? 0 : rng())); break;
        case 3: m.erase(pos, 1 + rng() % 8); break;
        case 4: m.insert(pos, m.substr(rng() % m.size(), rng() % 32)); break;
      }
    }
    auto r = parse(m, limits);
    if (r.ok()) {
      ok++;
      CHECK_FALSE(r.event.action.empty());
      CHECK(r.event.find("ACTION"));
    }
  }
  CHECK(ok > 0);  // some mutations stay valid (e.g. a changed value byte)
}
