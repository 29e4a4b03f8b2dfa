// Every way a new version can fail before the swap rolls back: the reply
// says why, the old version keeps serving, its load count stays and status
// records the failure. Then a good version still goes through.
#include <cstdio>

#include <catch2/catch.hpp>

#include "harness.hpp"

using namespace reload_test;

namespace {

// What a test writes before reloading w: block style, so that errors have known lines.
const std::string kHead =
    "agent: {control_socket: \"@DIR@/control.sock\", log_level: debug}\n"  // line 1
    "plugins:\n"                                                              // line 2
    "  - name: w\n"                                                           // line 3
    "    plugin: \"@DIR@/w.so\"\n";                                           // line 4

// The reload failed, said `why` and v1 still serves, untouched.
void expect_rolled_back(Agent& a, const Reload& r, const std::string& why) {
  INFO("reload reply: " << r.reply.dump());
  {
    INFO("agent log:\n" << a.log());
    REQUIRE(a.process().running());
  }
  CHECK(r.exit_code == 1);
  CHECK_FALSE(r.reply.value("ok", true));
  CHECK(r.error().find(why) != std::string::npos);
  CHECK(r.error().find("old version keeps running") != std::string::npos);
  json item = r.item("w");
  CHECK(item.is_object());
  if (item.is_object()) {
    CHECK(item.value("action", std::string()) == "failed");
    CHECK_FALSE(item.value("ok", true));
    CHECK(item.value("error", std::string()).find(why) != std::string::npos);
  }
  CHECK(version(a, "w") == "1");
  CHECK(last_result(a, "w").rfind("failed", 0) == 0);
  CHECK(loads(a, "w") == 1);
  json st = instance_status(a, "w");
  CHECK(st.value("state", std::string()) == "running");
  CHECK(st.value("reloading", true) == false);
}

}  // namespace

TEST_CASE("reload: a bad new .so (ABI, entry symbol, init, not a library) rolls back to v1", "[reload][rollback]") {
  WorkerAgent wa(", log_level: debug");
  Agent& a = wa.agent;
  const std::string& so = wa.so;
  REQUIRE(start(a));
  REQUIRE(version(a, "w") == "1");
  REQUIRE(loads(a, "w") == 1);

  SECTION("wrong ABI") {
    install(fixture("bad_abi"), so);
    expect_rolled_back(a, reload(a, "w"), "ABI");
  }
  SECTION("no entry symbol") {
    install(fixture("no_entry"), so);
    expect_rolled_back(a, reload(a, "w"), "entry symbol");
  }
  SECTION("init fails") {
    install(fixture("init_fails"), so);
    expect_rolled_back(a, reload(a, "w"), "init");
    CHECK(a.log().find("refusing to start: always") != std::string::npos);  // the plugin's own words
  }
  SECTION("garbage file") {
    install_bytes(std::string("this is not an ELF file\n") + std::string(4096, 'x'), so);
    expect_rolled_back(a, reload(a, "w"), "");
  }
  SECTION("truncated library") {
    install_bytes(hostlet::test::read_file(fixture("worker_v2")).substr(0, 3000), so);
    expect_rolled_back(a, reload(a, "w"), "");
  }
  SECTION("file gone") {
    REQUIRE(std::remove(so.c_str()) == 0);
    expect_rolled_back(a, reload(a, "w"), "");
  }

  // A good file after the failure goes through.
  install(fixture("worker_v2"), so);
  Reload ok = reload(a, "w");
  INFO("reload reply: " << ok.reply.dump());
  CHECK(ok.ok());
  CHECK(version(a, "w") == "2");
  CHECK(loads(a, "w") == 2);
  CHECK(last_result(a, "w") == "ok");
  CHECK(stops_cleanly(a));
}

TEST_CASE("reload: a bad config section rolls back with the file's line and column", "[reload][rollback]") {
  WorkerAgent wa(", log_level: debug");
  Agent& a = wa.agent;
  const std::string& so = wa.so;
  REQUIRE(start(a));
  const std::string file = a.config_path();
  install(fixture("worker_v2"), so);  // the new code would load: the config is what fails

  SECTION("a value out of range") {
    write_config(a, wa.dir, kHead + "    config:\n      default_ms: -5\n");  // line 6
    expect_rolled_back(a, reload(a, "w"), file + ":6:");
  }
  SECTION("an unknown key") {
    write_config(a, wa.dir, kHead + "    config:\n      default_mss: 5\n");  // line 6, column 7
    Reload r = reload(a, "w");
    expect_rolled_back(a, r, file + ":6:7:");
    CHECK(r.error().find("default_ms") != std::string::npos);  // did you mean
  }
  SECTION("a bad instance key") {
    write_config(a, wa.dir, kHead + "    max_inflight: lots\n");  // line 5
    expect_rolled_back(a, reload(a, "w"), file + ":5:");
  }
  SECTION("YAML that does not parse") {
    write_config(a, wa.dir, kHead + "    config: {default_ms: [\n");
    expect_rolled_back(a, reload(a, "w"), file + ":");
  }
  SECTION("the new version's start fails after the swap: the old version serves again") {
    write_config(a, wa.dir, kHead + "    config:\n      fail_start: true\n");
    Reload r = reload(a, "w");
    INFO("reload reply: " << r.reply.dump() << "\nlog:\n" << a.log());
    CHECK(r.exit_code == 1);
    CHECK(r.error().find("start") != std::string::npos);
    CHECK(r.item("w").value("action", std::string()) == "failed");
    CHECK(version(a, "w") == "1");
    CHECK(answered_version(ctl_json(a, {"call", "w.work", "ms=1"})) == "1");
    CHECK(last_result(a, "w").rfind("failed", 0) == 0);
    CHECK(instance_status(a, "w").value("state", std::string()) == "running");
  }
  SECTION("the section is gone from the file") {
    write_config(a, wa.dir, "agent: {control_socket: \"@DIR@/control.sock\"}\nplugins: []\n");
    expect_rolled_back(a, reload(a, "w"), "not in");
  }

  write_config(a, wa.dir, kHead + "    config:\n      default_ms: 5\n");
  const uint64_t loads_before = loads(a, "w");
  Reload ok = reload(a, "w");
  INFO("reload reply: " << ok.reply.dump());
  CHECK(ok.ok());
  CHECK(version(a, "w") == "2");
  json work = ctl_json(a, {"call", "w.work"});  // no ms: the new default
  CHECK(work["attrs"]["ms"] == "5");
  CHECK(loads(a, "w") == loads_before + 1);
  CHECK(stops_cleanly(a));
}

TEST_CASE("reload: an unknown instance is an error; hostlet-ctl says so and exits 1", "[reload][rollback]") {
  WorkerAgent wa;
  Agent& a = wa.agent;
  REQUIRE(start(a));
  Run r = a.ctl({"reload", "nosuch"});
  INFO("stdout: " << r.out << " stderr: " << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no instance") != std::string::npos);
  CHECK(r.err.find("nosuch") != std::string::npos);
  Reload j = reload(a, "nosuch");
  CHECK_FALSE(j.reply.value("ok", true));
  CHECK(j.error().find("no instance") != std::string::npos);
  // The human form of a success: the one-line summary, exit 0.
  Run ok = a.ctl({"reload", "w"});
  INFO("stdout: " << ok.out << " stderr: " << ok.err);
  CHECK(ok.exit_code == 0);
  CHECK_FALSE(ok.out.empty());
  CHECK(loads(a, "w") == 2);
  CHECK(version(a, "w") == "1");
  json st = instance_status(a, "w");
  INFO("status: " << st.dump());
  for (const char* key : {"name", "plugin", "version", "path", "state", "loads", "last_result", "last_time", "reloading"})
    CHECK(st.contains(key));
  CHECK(st.value("path", std::string()) == wa.so);
  CHECK(st.value("last_result", std::string()) == "ok");
  CHECK(stops_cleanly(a));
}

TEST_CASE("reload: watch: true reloads when the .so is replaced, and a bad file leaves the last good one",
          "[reload][watch]") {
  WorkerAgent wa(", log_level: debug", ", watch: true");
  Agent& a = wa.agent;
  const std::string& so = wa.so;
  REQUIRE(start(a));
  REQUIRE(version(a, "w") == "1");

  install(fixture("worker_v2"), so);  // renamed over the watched path
  CHECK(hostlet::test::wait_until([&] { return version(a, "w") == "2"; }, std::chrono::seconds(20)));
  CHECK(hostlet::test::wait_until([&] { return loads(a, "w") == 2; }, std::chrono::seconds(5)));
  CHECK(last_result(a, "w") == "ok");

  install_bytes("not a shared object\n", so);
  INFO(a.log());
  CHECK(hostlet::test::wait_until([&] { return last_result(a, "w").rfind("failed", 0) == 0; },
                                  std::chrono::seconds(20)));
  CHECK(version(a, "w") == "2");
  CHECK(loads(a, "w") == 2);

  // Written in place (not renamed): picked up once the writes settle.
  {
    std::string v1 = hostlet::test::read_file(fixture("worker_v1"));
    std::FILE* f = std::fopen(so.c_str(), "wb");
    REQUIRE(f);
    std::fwrite(v1.data(), 1, v1.size() / 2, f);
    std::fflush(f);
    std::fwrite(v1.data() + v1.size() / 2, 1, v1.size() - v1.size() / 2, f);
    std::fclose(f);
  }
  CHECK(hostlet::test::wait_until([&] { return version(a, "w") == "1"; }, std::chrono::seconds(20)));
  CHECK(last_result(a, "w") == "ok");
  CHECK(stops_cleanly(a));
}
