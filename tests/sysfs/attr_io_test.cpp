// read / write / list on a temporary tree, and on the real /sys for kernel errors.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "attr_io.hpp"
#include "tree.hpp"

using namespace hostlet::sysfs;
using hostlet::sysfs::test::Tree;

namespace {

// A miniature /sys: devices with attributes, class/net links into them, and traps.
struct Fixture {
  Tree t, outside;
  Fixture() {
    outside.file("secret", "s3cret\n");
    t.file("devices/virtual/net/hl0/mtu", "1500\n");
    t.file("devices/virtual/net/hl0/operstate", "up\n");
    t.file("devices/virtual/net/hl1/mtu", "9000\n");
    t.link("../../devices/virtual/net/hl0", "class/net/hl0");
    t.link("../../devices/virtual/net/hl1", "class/net/hl1");
    t.link(outside.path(), "class/net/evil");
    t.link(outside / "secret", "class/net/leak/mtu");
    t.file("big", std::string(5000, 'x'));
    t.file("binary", std::string("\x01\x00\x02", 3));
    REQUIRE(::mkfifo((t / "fifo").c_str(), 0600) == 0);
  }
  PathPolicy policy(std::vector<std::string> writable = {"class/net/*/mtu"},
                    std::vector<std::string> readable = {}) {
    PathPolicy p;
    REQUIRE(PathPolicy::make(t.path(), writable, readable, &p).ok());
    return p;
  }
};

}  // namespace

TEST_CASE("sysfs read: relative and absolute paths, through a symlink, newline stripped", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy();
  Value v = read_attr(p, "class/net/hl0/mtu", 4096);
  REQUIRE(v.status.ok());
  CHECK(v.value == "1500");
  CHECK(v.path == f.t / "class/net/hl0/mtu");
  v = read_attr(p, f.t / "class/net/hl0/operstate", 4096);
  REQUIRE(v.status.ok());
  CHECK(v.value == "up");
}

TEST_CASE("sysfs write: an allowed attribute is written and reads back", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy();
  Value v = write_attr(p, f.t / "class/net/hl0/mtu", "9000", 4096);
  REQUIRE(v.status.ok());
  CHECK(v.value == "9000");
  CHECK(f.t.read("devices/virtual/net/hl0/mtu") == "9000");
  CHECK(read_attr(p, "class/net/hl0/mtu", 4096).value == "9000");
}

TEST_CASE("sysfs write: the resolved name also matches the allow-list", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy({"devices/virtual/net/*/mtu"});
  REQUIRE(write_attr(p, "class/net/hl0/mtu", "1400", 4096).status.ok());
  CHECK(f.t.read("devices/virtual/net/hl0/mtu") == "1400");
}

TEST_CASE("sysfs write: a path outside `writable` is refused and left untouched", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy();
  Value v = write_attr(p, "class/net/hl0/operstate", "down", 4096);
  CHECK(v.status.err == -EACCES);
  CHECK(v.status.message == "write " + (f.t / "class/net/hl0/operstate") + ": not writable (matches no `writable` glob)");
  CHECK(f.t.read("devices/virtual/net/hl0/operstate") == "up\n");
  // Refused before anything is opened: a FIFO would block or fail differently, a missing file would be ENOENT.
  CHECK(write_attr(p, "fifo", "x", 4096).status.err == -EACCES);
  CHECK(write_attr(p, "class/net/hl0/nope", "x", 4096).status.err == -EACCES);
  // Nothing is writable without a `writable` list.
  auto none = f.policy({});
  CHECK(write_attr(none, "class/net/hl0/mtu", "1", 4096).status.err == -EACCES);
  CHECK(f.t.read("devices/virtual/net/hl0/mtu") == "1500\n");
}

TEST_CASE("sysfs paths: '..' escapes and absolute paths elsewhere are refused", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy({"**"});
  Value v = read_attr(p, "class/net/../../../etc/passwd", 4096);
  CHECK(v.status.err == -EACCES);
  CHECK(v.status.message == "read: '..' is not allowed in path class/net/../../../etc/passwd");
  v = read_attr(p, "/etc/passwd", 4096);
  CHECK(v.status.err == -EACCES);
  CHECK(v.status.message == "read: path /etc/passwd is not under root " + f.t.path());
  v = write_attr(p, f.t / "class/net/hl0/../../../../etc/x", "1", 4096);
  CHECK(v.status.err == -EACCES);
  CHECK(v.status.message.find("'..' is not allowed") != std::string::npos);
}

TEST_CASE("sysfs paths: symlinks leading out of root are refused", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy({"**"});
  Value v = read_attr(p, "class/net/evil/secret", 4096);
  CHECK(v.status.err == -EACCES);
  CHECK(v.status.message == "read " + (f.t / "class/net/evil/secret") + " resolves to " + (f.outside / "secret") +
                                ", outside root " + f.t.path());
  CHECK(read_attr(p, "class/net/leak/mtu", 4096).status.err == -EACCES);
  v = write_attr(p, "class/net/leak/mtu", "0", 4096);
  CHECK(v.status.err == -EACCES);
  CHECK(v.status.message.find("outside root") != std::string::npos);
  CHECK(f.outside.read("secret") == "s3cret\n");
}

TEST_CASE("sysfs: oversize values are refused in both directions", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy({"**"});
  Value v = read_attr(p, "big", 4096);
  CHECK(v.status.err == -EFBIG);
  CHECK(v.status.message == "read " + (f.t / "big") + ": value larger than max_value (4096 bytes)");
  CHECK(read_attr(p, "big", 5000).status.ok());
  v = write_attr(p, "class/net/hl0/mtu", std::string(4097, '1'), 4096);
  CHECK(v.status.err == -EFBIG);
  CHECK(v.status.message.find("value of 4097 bytes exceeds max_value (4096 bytes)") != std::string::npos);
  CHECK(f.t.read("devices/virtual/net/hl0/mtu") == "1500\n");
}

TEST_CASE("sysfs: missing files, directories, FIFOs and binary values are errors", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy({"**"});
  Value v = read_attr(p, "class/net/hl0/nope", 4096);
  CHECK(v.status.err == -ENOENT);
  CHECK(v.status.message == "read " + (f.t / "class/net/hl0/nope") + ": No such file or directory (ENOENT)");
  v = write_attr(p, "class/net/hl9/mtu", "1", 4096);
  CHECK(v.status.err == -ENOENT);
  CHECK(v.status.message.find("(ENOENT)") != std::string::npos);
  CHECK(read_attr(p, "class/net/hl0", 4096).status.err == -EISDIR);
  v = read_attr(p, "fifo", 4096);  // must not block
  CHECK(v.status.err == -EINVAL);
  CHECK(v.status.message.find("not a regular file") != std::string::npos);
  CHECK(write_attr(p, "fifo", "x", 4096).status.err == -EINVAL);
  v = read_attr(p, "binary", 4096);
  CHECK(v.status.err == -EILSEQ);
}

TEST_CASE("sysfs read: `readable` limits what can be read", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy({}, {"class/net/*/mtu"});
  CHECK(read_attr(p, "class/net/hl0/mtu", 4096).status.ok());
  Value v = read_attr(p, "class/net/hl0/operstate", 4096);
  CHECK(v.status.err == -EACCES);
  CHECK(v.status.message.find("not readable") != std::string::npos);
}

TEST_CASE("sysfs list: paths and values of a glob; escapes reported per entry", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy();
  Listing l = list_attrs(p, "class/net/*/mtu", 4096, 100);
  REQUIRE(l.status.ok());
  REQUIRE(l.entries.size() == 3);
  CHECK(l.entries[0].path == f.t / "class/net/hl0/mtu");
  CHECK(l.entries[0].value == "1500");
  CHECK(l.entries[1].path == f.t / "class/net/hl1/mtu");
  CHECK(l.entries[1].value == "9000");
  CHECK(l.entries[2].path == f.t / "class/net/leak/mtu");
  CHECK(l.entries[2].status.err == -EACCES);

  auto json = nlohmann::json::parse(listing_json(l));
  REQUIRE(json.is_array());
  CHECK(json[0] == nlohmann::json({{"path", f.t / "class/net/hl0/mtu"}, {"value", "1500"}}));
  CHECK(json[2].contains("error"));
  CHECK_FALSE(json[2].contains("value"));

  CHECK(list_attrs(p, "class/net/*/nothing", 4096, 100).entries.empty());
  Listing dirs = list_attrs(p, "class/net/*", 4096, 100);  // directories are skipped, escapes reported
  REQUIRE(dirs.status.ok());
  REQUIRE(dirs.entries.size() == 1);
  CHECK(dirs.entries[0].path == f.t / "class/net/evil");
  CHECK(dirs.entries[0].status.err == -EACCES);
  Listing big = list_attrs(p, "class/net/*/mtu", 4096, 2);
  CHECK(big.status.err == -E2BIG);
  CHECK(list_attrs(p, "../*", 4096, 100).status.err == -EACCES);

  auto only_hl0 = f.policy({}, {"class/net/hl0/*"});
  Listing r = list_attrs(only_hl0, f.t / "class/net/*/mtu", 4096, 100);
  REQUIRE(r.entries.size() == 2);  // hl0, and the refused leak
  CHECK(r.entries[0].path == f.t / "class/net/hl0/mtu");
}

TEST_CASE("sysfs list: a root containing glob characters is taken literally", "[sysfs][io]") {
  Tree t;
  t.file("we[i]rd*/a/x", "1\n");
  PathPolicy p;
  REQUIRE(PathPolicy::make(t / "we[i]rd*", {}, {}, &p).ok());
  Listing l = list_attrs(p, "*/x", 4096, 10);
  REQUIRE(l.status.ok());
  REQUIRE(l.entries.size() == 1);
  CHECK(l.entries[0].value == "1");
}

TEST_CASE("sysfs AttrFile: re-reads from offset 0 see the new content", "[sysfs][io]") {
  Fixture f;
  auto p = f.policy();
  Status s;
  auto file = AttrFile::open(p, {"devices/virtual/net/hl0/mtu", f.t / "devices/virtual/net/hl0/mtu", "devices/virtual/net/hl0/mtu"}, &s);
  REQUIRE(file);
  std::string v;
  REQUIRE(file->reread("mtu", 4096, &v).ok());
  CHECK(v == "1500");
  f.t.file("devices/virtual/net/hl0/mtu", "1280\n");  // truncates in place: same inode
  REQUIRE(file->reread("mtu", 4096, &v).ok());
  CHECK(v == "1280");
  CHECK_FALSE(AttrFile::open(p, {"nope", f.t / "nope", "nope"}, &s));
  CHECK(s.err == -ENOENT);
}

TEST_CASE("sysfs on the real /sys: kernel errors come back with their errno name", "[sysfs][io][kernel]") {
  if (geteuid() != 0) {
    WARN("not root: skipped");
    return;
  }
  PathPolicy p;
  REQUIRE(PathPolicy::make("/sys", {"class/net/lo/mtu", "class/net/lo/ifindex"}, {}, &p).ok());
  Value v = read_attr(p, "/sys/class/net/lo/mtu", 4096);  // a symlink into /sys/devices/virtual
  REQUIRE(v.status.ok());
  CHECK(std::stoi(v.value) > 0);
  Value w = write_attr(p, "/sys/class/net/lo/mtu", "abc", 4096);
  CHECK(w.status.err == -EINVAL);
  CHECK(w.status.message == "write /sys/class/net/lo/mtu: Invalid argument (EINVAL)");
  w = write_attr(p, "class/net/lo/ifindex", "7", 4096);  // a read-only attribute
  CHECK(w.status.err == -EACCES);
  CHECK(w.status.message == "write /sys/class/net/lo/ifindex: Permission denied (EACCES)");
  CHECK(read_attr(p, "/sys/class/net/lo/mtu", 4096).value == v.value);
  Listing l = list_attrs(p, "class/net/lo/*", 4096, 1000);
  REQUIRE(l.status.ok());
  CHECK(l.entries.size() > 5);
}
