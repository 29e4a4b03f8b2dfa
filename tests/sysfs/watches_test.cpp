#include <catch2/catch.hpp>

#include "watches.hpp"

using namespace hostlet::sysfs;

TEST_CASE("sysfs watches: a change is reported once, against the previous value", "[sysfs][watches]") {
  WatchTable w;
  w.add("/sys/a", std::string("1"));
  CHECK(w.contains("/sys/a"));
  auto t = w.ticket("/sys/a");
  CHECK_FALSE(w.apply("/sys/a", t, {}, "1"));
  t = w.ticket("/sys/a");
  auto c = w.apply("/sys/a", t, {}, "2");
  REQUIRE(c);
  CHECK(c->path == "/sys/a");
  CHECK(c->value == "2");
  CHECK(c->previous == "1");
  CHECK(*w.value("/sys/a") == "2");
}

TEST_CASE("sysfs watches: an older read finishing last is not reported as a change back", "[sysfs][watches]") {
  WatchTable w;
  w.add("/sys/a", std::string("1"));
  auto interval = w.ticket("/sys/a");  // submitted first, reads the old value
  auto notify = w.ticket("/sys/a");    // submitted later, reads the new one, finishes first
  REQUIRE(w.apply("/sys/a", notify, {}, "2"));
  CHECK_FALSE(w.apply("/sys/a", interval, {}, "1"));
  CHECK(*w.value("/sys/a") == "2");
}

TEST_CASE("sysfs watches: failed reads keep the last value; first value is a silent baseline", "[sysfs][watches]") {
  WatchTable w;
  w.add("/sys/a", std::nullopt);
  CHECK(w.value("/sys/a") == nullptr);
  CHECK_FALSE(w.apply("/sys/a", w.ticket("/sys/a"), Status::failure(EIO, "x"), ""));
  CHECK_FALSE(w.apply("/sys/a", w.ticket("/sys/a"), {}, "5"));  // baseline
  CHECK_FALSE(w.apply("/sys/a", w.ticket("/sys/a"), Status::failure(EIO, "x"), ""));
  CHECK(*w.value("/sys/a") == "5");
  CHECK(w.apply("/sys/a", w.ticket("/sys/a"), {}, "6"));
}

TEST_CASE("sysfs watches: reads of a removed path are ignored, also after it returns", "[sysfs][watches]") {
  WatchTable w;
  w.add("/sys/a", std::string("1"));
  auto old = w.ticket("/sys/a");
  w.remove("/sys/a");
  CHECK_FALSE(w.contains("/sys/a"));
  CHECK(w.ticket("/sys/a") == 0);
  CHECK_FALSE(w.apply("/sys/a", old, {}, "2"));
  w.add("/sys/a", std::string("3"));
  CHECK_FALSE(w.apply("/sys/a", old, {}, "2"));  // submitted before the re-add
  CHECK(*w.value("/sys/a") == "3");
  CHECK(w.paths() == std::vector<std::string>{"/sys/a"});
}
