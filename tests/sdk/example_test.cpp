// End to end: sdk/examples/hello, built the way a third party builds it.
//
// 1. `meson install --tags devel --destdir STAGE` installs exactly the SDK of
//    this build tree (headers, hostlet-plugin.map, hostlet-sdk.pc) under
//    STAGE/<prefix>.
// 2. The installed .pc still says prefix=<prefix> (a destdir install does not
//    relocate files, it only stages them). Every path in it is derived from
//    ${prefix}, so the test writes a copy with prefix=STAGE/<prefix>, which is
//    what `pkg-config --define-variable=prefix=...` would do if meson could pass
//    it. PKG_CONFIG_LIBDIR points only at that copy, so nothing from the host's
//    own pkg-config path (or the source tree) can leak into the build.
// 3. A copy of sdk/examples/hello is configured and built out of tree with
//    `meson setup` (warnings as errors) and `ninja`.
// 4. The real agent loads the resulting hello.so by absolute path and
//    hostlet-ctl calls hello.greet.
// Every step that fails fails the test with the command's output.
#include <dlfcn.h>
#include <sys/wait.h>

#include <csignal>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <hostlet/plugin.h>
#include <nlohmann/json.hpp>

#include "support.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using hostlet::test::Agent;
using hostlet::test::env_path;
using hostlet::test::Process;
using hostlet::test::read_file;
using hostlet::test::Run;
using hostlet::test::TempDir;
using Env = std::map<std::string, std::string>;

namespace {

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Runs argv; a non-zero exit fails the test with everything the command printed.
Run must_run(const std::vector<std::string>& argv, const Env& env = {}, std::chrono::milliseconds timeout = 300s) {
  Run r = hostlet::test::run(argv, timeout, env);
  if (r.exit_code != 0)
    FAIL("`" << join(argv) << "` exited with " << r.exit_code << " (-1: signal or timeout)\n--- stdout\n"
              << r.out << "\n--- stderr\n"
              << r.err);
  return r;
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  for (std::string t; in >> t;) w.push_back(t);
  return w;
}

bool under(const std::string& path, const std::string& dir) { return path.rfind(dir + "/", 0) == 0; }

// The one hostlet-sdk.pc below `stage`; fails the test unless there is exactly one.
fs::path find_pc(const std::string& stage) {
  std::vector<fs::path> found;
  for (const auto& e : fs::recursive_directory_iterator(stage))
    if (e.is_regular_file() && e.path().filename() == "hostlet-sdk.pc") found.push_back(e.path());
  if (found.size() != 1) FAIL("expected one hostlet-sdk.pc under " << stage << ", found " << found.size());
  return found[0];
}

// Writes `pc` with its prefix moved under `stage` into dir/hostlet-sdk.pc.
void write_staged_pc(const fs::path& pc, const std::string& stage, const TempDir& tmp, const std::string& dir) {
  std::istringstream in(read_file(pc.string()));
  std::string out, prefix;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("prefix=", 0) == 0) {
      prefix = line.substr(7);
      line = "prefix=" + stage + prefix;
    }
    out += line + "\n";
  }
  if (prefix.empty() || prefix[0] != '/') FAIL(pc << " has no absolute prefix=:\n" << read_file(pc.string()));
  if (!under(pc.string(), stage + prefix)) FAIL(pc << " is not installed under its own prefix " << prefix);
  tmp.write(dir + "/hostlet-sdk.pc", out);
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// True when `path` is mapped into this process.
bool mapped(const std::string& path) { return read_file("/proc/self/maps").find(path) != std::string::npos; }

}  // namespace

TEST_CASE("sdk: the hello example builds out of tree from the installed SDK, loads, offloads and answers",
          "[sdk][e2e]") {
  TempDir tmp;
  const std::string stage = tmp / "stage";
  const std::string pcdir = tmp / "pkgconfig";
  const std::string src = tmp / "src";
  const std::string build = tmp / "build";
  const std::string meson = env_path("HOSTLET_MESON");
  const std::string pkg_config = env_path("HOSTLET_PKG_CONFIG");
  const Env pc_env{{"PKG_CONFIG_PATH", pcdir}, {"PKG_CONFIG_LIBDIR", pcdir}};

  // 1-2: install the SDK, point pkg-config at it.
  must_run({meson, "install", "-C", env_path("HOSTLET_BUILD_ROOT"), "--no-rebuild", "--tags", "devel", "--destdir",
            stage});
  write_staged_pc(find_pc(stage), stage, tmp, "pkgconfig");

  Run flags = must_run({pkg_config, "--cflags", "--libs", "hostlet-sdk"}, pc_env);
  bool header_found = false, map_found = false;
  for (const auto& w : words(flags.out)) {
    if (w.rfind("-I", 0) == 0) {
      header_found = header_found || fs::exists(w.substr(2) + "/hostlet/plugin.hpp");
      CHECK(under(w.substr(2), stage));
    }
    const std::string vs = "-Wl,--version-script=";
    if (w.rfind(vs, 0) == 0) {
      map_found = fs::exists(w.substr(vs.size()));
      CHECK(under(w.substr(vs.size()), stage));
    }
  }
  INFO("pkg-config --cflags --libs hostlet-sdk: " << flags.out);
  REQUIRE(header_found);  // an -I with hostlet/plugin.hpp in the staged install
  REQUIRE(map_found);     // the link flag naming the installed hostlet-plugin.map
  // Plugins built from the .pc can be unloaded by a reload: no STB_GNU_UNIQUE (GCC here).
  CHECK(flags.out.find("-fno-gnu-unique") != std::string::npos);
  CHECK(flags.out.find("-fvisibility=hidden") != std::string::npos);
  // The .pc's ABI variables agree with the header it installs.
  CHECK(trim(must_run({pkg_config, "--variable=abi_major", "hostlet-sdk"}, pc_env).out) ==
        std::to_string(HOSTLET_ABI_MAJOR));
  CHECK(trim(must_run({pkg_config, "--variable=abi_minor", "hostlet-sdk"}, pc_env).out) ==
        std::to_string(HOSTLET_ABI_MINOR));

  // 3: build a copy of the example, so that it cannot reach into the source tree.
  fs::create_directories(src);
  for (const auto& e : fs::directory_iterator(env_path("HOSTLET_SOURCE_ROOT") + "/sdk/examples/hello"))
    if (e.is_regular_file()) fs::copy_file(e.path(), src + "/" + e.path().filename().string());
  must_run({meson, "setup", build, src, "-Dwarning_level=3", "-Dwerror=true"}, pc_env);
  must_run({env_path("HOSTLET_NINJA"), "-C", build}, pc_env);
  const std::string so = build + "/hello.so";
  REQUIRE(fs::exists(so));

  // Only the entry symbol is exported (hostlet-plugin.map from the .pc did its job).
  std::set<std::string> exported;
  std::istringstream nm(must_run({env_path("HOSTLET_NM"), "-D", "--defined-only", so}).out);
  for (std::string line; std::getline(nm, line);)
    if (auto w = words(line); !w.empty()) exported.insert(w.back());
  CHECK(exported == std::set<std::string>{"hostlet_plugin_entry"});

  // It can be unloaded again (no STB_GNU_UNIQUE symbol pins it), as reload needs.
  {
    void* h = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
    INFO("dlopen: " << (h ? "ok" : dlerror()));
    REQUIRE(h);
    auto entry = reinterpret_cast<hostlet_plugin_entry_fn>(dlsym(h, HOSTLET_PLUGIN_ENTRY_SYMBOL));
    REQUIRE(entry);
    const hostlet_plugin* desc = entry();
    CHECK(desc->abi_major == HOSTLET_ABI_MAJOR);
    CHECK(desc->struct_size == sizeof(hostlet_plugin));
    CHECK(std::string(desc->name) == "hello");
    REQUIRE(dlclose(h) == 0);
    CHECK_FALSE(mapped(so));
  }

  // 4: the agent validates a config against hello's schema...
  const std::string config =
      "agent: {control_socket: \"@DIR@/control.sock\", threadpool: 2, log_level: debug}\n"
      "plugins:\n"
      "  - name: hello\n"
      "    plugin: " + so + "\n"
      "    max_inflight: 1\n"
      "    config: {greeting: hi, tick_interval: 50ms}\n";
  {
    TempDir bad_dir;
    std::string bad = bad_dir.write("bad.yaml", "plugins:\n  - name: hello\n    plugin: " + so +
                                                    "\n    config: {greting: hi}\n");
    Run r = hostlet::test::run({env_path("HOSTLET_BIN"), "--check", "-c", bad});
    INFO("hostlet --check on a misspelt key:\n" << r.out << r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("bad.yaml:4:") != std::string::npos);
    CHECK(r.err.find("greeting") != std::string::npos);  // "did you mean"
  }
  Agent agent(tmp, config);
  must_run({env_path("HOSTLET_BIN"), "--check", "-c", agent.config_path()});

  // ...loads it and runs it. Each step is a scope of its own so that a failure
  // reports that step's output and the agent's log up to then.
  {
    bool started = agent.start();
    INFO("agent log:\n" << agent.log());
    REQUIRE(started);
  }
  {
    Run r = agent.ctl({"call", "hello.greet", "name=x"});
    INFO("hostlet-ctl call hello.greet name=x:\n" << r.out << r.err << "agent log:\n" << agent.log());
    CHECK(r.exit_code == 0);
    CHECK(r.out == "ok\n  text=hi, x!\n");
  }
  {
    Run r = agent.ctl({"--json", "call", "hello.greet", "name=x"});
    INFO("hostlet-ctl --json call hello.greet name=x:\n" << r.out << r.err << "agent log:\n" << agent.log());
    CHECK(r.exit_code == 0);
    auto reply = nlohmann::json::parse(r.out, nullptr, false);
    REQUIRE(reply.is_object());
    CHECK(reply.value("ok", false));
    CHECK(reply["attrs"] == nlohmann::json{{"text", "hi, x!"}});
    CHECK_FALSE(reply.contains("data"));
  }
  {
    Run r = agent.ctl({"call", "hello.greet"});
    INFO("hostlet-ctl call hello.greet (no name):\n" << r.out << r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("missing attribute 'name'") != std::string::npos);
  }
  {
    // Both answers went through the instance's offload lane.
    Run r = agent.ctl({"--json", "stats"});
    INFO("hostlet-ctl --json stats:\n" << r.out << r.err);
    REQUIRE(r.exit_code == 0);
    auto stats = nlohmann::json::parse(r.out, nullptr, false);
    REQUIRE(stats.is_object());
    const auto& lane = stats["data"]["lanes"]["hello"];
    CHECK(lane.value("submitted", 0) == 2);
    CHECK(lane.value("done", 0) == 2);
    CHECK(lane.value("max_inflight", 0) == 1);
  }
  {
    // The schema doubles as documentation.
    Run r = agent.ctl({"plugins", "--describe", "hello"});
    INFO("hostlet-ctl plugins --describe hello:\n" << r.out << r.err);
    CHECK(r.exit_code == 0);
    for (const char* s : {"greeting", "tick_interval", "greet", "hello.tick"}) CHECK(r.out.find(s) != std::string::npos);
  }
  {
    // The timer publishes hello.tick every 50ms.
    Process events({env_path("HOSTLET_CTL"), "-s", agent.control_socket(), "events", "--type", "hello.tick"});
    bool ticked =
        hostlet::test::wait_until([&] { return events.out().find("hello hello.tick n=") != std::string::npos; });
    INFO("hostlet-ctl events --type hello.tick:\n" << events.out() << events.err() << "agent log:\n" << agent.log());
    CHECK(ticked);
    events.stop(SIGINT);
  }

  // A clean shutdown: stop, destroy, dlclose, uv_loop_close() == 0, exit 0.
  auto st = agent.stop();
  INFO("agent log:\n" << agent.log());
  REQUIRE(st.has_value());
  CHECK(WIFEXITED(*st));
  CHECK(WEXITSTATUS(*st) == 0);
}
