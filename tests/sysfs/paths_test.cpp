#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "paths.hpp"
#include "tree.hpp"

using namespace hostlet::sysfs;
using hostlet::sysfs::test::Tree;

TEST_CASE("sysfs globs: '*' stays in one component, '**' spans any number", "[sysfs][paths]") {
  CHECK(glob_match("class/net/*/mtu", "class/net/hl0/mtu"));
  CHECK_FALSE(glob_match("class/net/*/mtu", "class/net/hl0/queues/mtu"));
  CHECK_FALSE(glob_match("class/net/*/mtu", "class/net/hl0/mtu2"));
  CHECK_FALSE(glob_match("class/net/*", "class/net/hl0/mtu"));
  CHECK(glob_match("class/net/hl[0-9]/mtu", "class/net/hl7/mtu"));
  CHECK(glob_match("class/**", "class/net/hl0/mtu"));
  CHECK(glob_match("**/mtu", "devices/virtual/net/hl0/mtu"));
  CHECK(glob_match("**", ""));
  CHECK(glob_match("class/**/mtu", "class/mtu"));
  CHECK_FALSE(glob_match("class/**/mtu", "block/mtu"));
  CHECK(has_glob_chars("a/*/b"));
  CHECK_FALSE(has_glob_chars("class/net/eth0/mtu"));
}

TEST_CASE("sysfs globs: many '**' against a long request path take linear time", "[sysfs][paths]") {
  // Backtracking took |path|^k for k "**": this one ran for minutes. A
  // write request is matched against `writable` before it is resolved, so
  // its path, up to PATH_MAX, is the client's to choose.
  std::string path = "a";
  for (int i = 0; i < 2000; i++) path += "/a";
  const std::string glob = "**/a/**/a/**/a/**/b";
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(glob_match(glob, path));
  CHECK(glob_match(glob, path + "/b"));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
}

TEST_CASE("sysfs paths: requests are made relative to root, '..' and other roots refused", "[sysfs][paths]") {
  PathPolicy p;
  REQUIRE(PathPolicy::make("/sys/", {}, {}, &p).ok());
  CHECK(p.root() == "/sys");
  std::string rel;
  REQUIRE(p.relative("/sys/class/net/eth0/mtu", &rel).ok());
  CHECK(rel == "class/net/eth0/mtu");
  REQUIRE(p.relative("class//net/./eth0/mtu/", &rel).ok());
  CHECK(rel == "class/net/eth0/mtu");
  REQUIRE(p.relative("/sys", &rel).ok());
  CHECK(rel.empty());
  REQUIRE(p.relative("//sys//class", &rel).ok());
  CHECK(rel == "class");
  CHECK(p.absolute("class/net") == "/sys/class/net");
  CHECK(p.absolute("") == "/sys");

  Status s = p.relative("/etc/passwd", &rel);
  CHECK(s.err == -EACCES);
  CHECK(s.message == "path /etc/passwd is not under root /sys");
  CHECK(p.relative("/sysfoo/x", &rel).err == -EACCES);
  s = p.relative("class/net/../../../etc/passwd", &rel);
  CHECK(s.err == -EACCES);
  CHECK(s.message.find("'..' is not allowed") != std::string::npos);
  CHECK(p.relative("/sys/../etc/passwd", &rel).err == -EACCES);
  CHECK(p.relative("", &rel).err == -EINVAL);
  CHECK(p.relative(std::string(5000, 'a'), &rel).err == -ENAMETOOLONG);
}

TEST_CASE("sysfs paths: bad root and globs fail the config", "[sysfs][paths]") {
  PathPolicy p;
  CHECK(PathPolicy::make("sys", {}, {}, &p).err == -EINVAL);
  CHECK(PathPolicy::make("/sys/../etc", {}, {}, &p).err == -EINVAL);
  Status s = PathPolicy::make("/sys", {"/etc/*"}, {}, &p);
  CHECK(s.err == -EINVAL);
  CHECK(s.message.find("writable") != std::string::npos);
  CHECK(PathPolicy::make("/sys", {}, {"class/../.."}, &p).err == -EINVAL);

  REQUIRE(PathPolicy::make("/sys", {"/sys/class/net/*/mtu", "block/*/queue/scheduler"}, {}, &p).ok());
  CHECK(p.writable("class/net/eth0/mtu"));
  CHECK(p.writable("block/vda/queue/scheduler"));
  CHECK_FALSE(p.writable("class/net/eth0/operstate"));
  CHECK(p.readable("anything/at/all"));  // readable absent: everything

  REQUIRE(PathPolicy::make("/sys", {}, {"class/net/**"}, &p).ok());
  CHECK(p.readable("class/net/eth0/mtu"));
  CHECK_FALSE(p.readable("kernel/mm/transparent_hugepage/enabled"));
  CHECK_FALSE(p.writable("class/net/eth0/mtu"));  // nothing writable unless listed

  REQUIRE(PathPolicy::make("/", {"tmp/x"}, {}, &p).ok());
  std::string rel;
  REQUIRE(p.relative("/tmp/x", &rel).ok());
  CHECK(rel == "tmp/x");
  CHECK(p.absolute(rel) == "/tmp/x");
}

TEST_CASE("sysfs paths: resolution follows symlinks that stay under root only", "[sysfs][paths]") {
  Tree t, outside;
  outside.file("secret", "s3cret\n");
  t.file("devices/virtual/net/hl0/mtu", "1500\n");
  t.link("../../devices/virtual/net/hl0", "class/net/hl0");      // like /sys/class/net/X
  t.link(outside.path(), "class/net/evil");                       // a directory link out
  t.link(outside / "secret", "class/net/hl1/mtu");                // a file link out
  t.link(t / "devices/virtual/net/hl0", "class/net/abs");         // absolute, but inside

  PathPolicy p;
  REQUIRE(PathPolicy::make(t.path(), {}, {}, &p).ok());
  std::string real, real_rel;
  REQUIRE(p.resolve("class/net/hl0/mtu", &real, &real_rel).ok());
  CHECK(real == t / "devices/virtual/net/hl0/mtu");
  CHECK(real_rel == "devices/virtual/net/hl0/mtu");
  REQUIRE(p.resolve("class/net/abs/mtu", &real, &real_rel).ok());
  CHECK(real_rel == "devices/virtual/net/hl0/mtu");

  Status s = p.resolve("class/net/evil/secret", &real, &real_rel);
  CHECK(s.err == -EACCES);
  CHECK(s.message.find("outside root " + t.path()) != std::string::npos);
  CHECK(p.resolve("class/net/hl1/mtu", &real, &real_rel).err == -EACCES);

  s = p.resolve("class/net/hl0/nope", &real, &real_rel);
  CHECK(s.err == -ENOENT);
  CHECK(s.message == t.path() + "/class/net/hl0/nope: No such file or directory (ENOENT)");
}
