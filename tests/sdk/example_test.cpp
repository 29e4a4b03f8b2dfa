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
// 5. The same example built with clang (HOSTLET_CLANGXX), whose -fno-gnu-unique
//    refusal the .pc must not trigger, and the plain C example (hello_c), both
//    from the copies the SDK installed under share/doc/hostlet/examples.
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

// The example folder `name` as the SDK installed it under STAGE.
std::string installed_example(const std::string& stage, const std::string& name) {
  for (const auto& e : fs::recursive_directory_iterator(stage))
    if (e.is_directory() && e.path().filename() == name && e.path().parent_path().filename() == "examples" &&
        e.path().string().find("/share/doc/hostlet/") != std::string::npos)
      return e.path().string();
  FAIL("no share/doc/hostlet/examples/" << name << " under " << stage);
  return {};
}

// Copies example folder `from` to `src` (so that the build cannot reach into
// any other tree), configures it with warnings as errors and builds it.
// Returns the path of the built NAME.so.
std::string build_example(const std::string& from, const std::string& src, const std::string& build,
                          const std::string& name, Env env) {
  fs::create_directories(src);
  for (const auto& e : fs::directory_iterator(from))
    if (e.is_regular_file()) fs::copy_file(e.path(), src + "/" + e.path().filename().string());
  must_run({env_path("HOSTLET_MESON"), "setup", build, src, "-Dwarning_level=3", "-Dwerror=true"}, env);
  must_run({env_path("HOSTLET_NINJA"), "-C", build}, env);
  const std::string so = build + "/" + name + ".so";
  REQUIRE(fs::exists(so));
  return so;
}

// The dynamic symbols `so` defines.
std::set<std::string> exported_symbols(const std::string& so) {
  std::set<std::string> exported;
  std::istringstream nm(must_run({env_path("HOSTLET_NM"), "-D", "--defined-only", so}).out);
  for (std::string line; std::getline(nm, line);)
    if (auto w = words(line); !w.empty()) exported.insert(w.back());
  return exported;
}

// dlopen, the descriptor's name, dlclose: and then the image is gone (no
// STB_GNU_UNIQUE symbol pins it), as reload needs.
void loads_and_unloads(const std::string& so, const std::string& name) {
  void* h = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  INFO("dlopen " << so << ": " << (h ? "ok" : dlerror()));
  REQUIRE(h);
  auto entry = reinterpret_cast<hostlet_plugin_entry_fn>(dlsym(h, HOSTLET_PLUGIN_ENTRY_SYMBOL));
  REQUIRE(entry);
  const hostlet_plugin* desc = entry();
  CHECK(desc->abi_major == HOSTLET_ABI_MAJOR);
  CHECK(desc->struct_size == sizeof(hostlet_plugin));
  CHECK(std::string(desc->name) == name);
  REQUIRE(dlclose(h) == 0);
  CHECK_FALSE(mapped(so));
}

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
  // Cflags hold only what every compiler takes; GCC's -fno-gnu-unique (so
  // that a reload can unload the plugin) is the variable gcc_cflags.
  CHECK(flags.out.find("-fno-gnu-unique") == std::string::npos);
  CHECK(flags.out.find("-fvisibility=hidden") != std::string::npos);
  CHECK(trim(must_run({pkg_config, "--variable=gcc_cflags", "hostlet-sdk"}, pc_env).out) == "-fno-gnu-unique");
  // The .pc's ABI variables agree with the header it installs.
  CHECK(trim(must_run({pkg_config, "--variable=abi_major", "hostlet-sdk"}, pc_env).out) ==
        std::to_string(HOSTLET_ABI_MAJOR));
  CHECK(trim(must_run({pkg_config, "--variable=abi_minor", "hostlet-sdk"}, pc_env).out) ==
        std::to_string(HOSTLET_ABI_MINOR));

  // 3: build a copy of the installed example (GCC, the default compiler here).
  const std::string so = build_example(installed_example(stage, "hello"), src, build, "hello", pc_env);
  // Only the entry symbol is exported (hostlet-plugin.map from the .pc did its job).
  CHECK(exported_symbols(so) == std::set<std::string>{"hostlet_plugin_entry"});
  loads_and_unloads(so, "hello");

  // 5: clang builds it too from the same .pc, and the plain C example builds.
  Env clang_env = pc_env;
  clang_env["CXX"] = env_path("HOSTLET_CLANGXX");
  const std::string clang_so =
      build_example(installed_example(stage, "hello"), tmp / "src-clang", tmp / "build-clang", "hello", clang_env);
  CHECK(read_file(tmp / "build-clang/meson-logs/meson-log.txt").find("clang version") != std::string::npos);
  CHECK(exported_symbols(clang_so) == std::set<std::string>{"hostlet_plugin_entry"});
  loads_and_unloads(clang_so, "hello");
  const std::string c_so =
      build_example(installed_example(stage, "hello_c"), tmp / "src-c", tmp / "build-c", "hello_c", pc_env);
  CHECK(exported_symbols(c_so) == std::set<std::string>{"hostlet_plugin_entry"});
  loads_and_unloads(c_so, "hello_c");
  // The guide (installed as share/doc/hostlet/README.md) shows procinfo's
  // two files as they are, so what a reader copies is what this test builds.
  {
    const std::string dir = installed_example(stage, "procinfo");
    const std::string guide = fs::path(dir).parent_path().parent_path() / "README.md";
    REQUIRE(fs::exists(guide));
    for (const char* f : {"procinfo.cpp", "meson.build"}) {
      INFO(guide << " should hold " << f << " verbatim");
      CHECK(read_file(guide).find(read_file(dir + "/" + f)) != std::string::npos);
    }
  }
  // The guide's /proc plugin (C++20 coroutines, task.hpp).
  const std::string proc_so =
      build_example(installed_example(stage, "procinfo"), tmp / "src-proc", tmp / "build-proc", "procinfo", pc_env);
  CHECK(exported_symbols(proc_so) == std::set<std::string>{"hostlet_plugin_entry"});

  // 4: the agent validates a config against hello's schema...
  const std::string config =
      "agent: {control_socket: \"@DIR@/control.sock\", threadpool: 2, log_level: debug}\n"
      "plugins:\n"
      "  - name: hello\n"
      "    plugin: " + so + "\n"
      "    max_inflight: 1\n"
      "    config: {greeting: hi, tick_interval: 50ms}\n"
      "  - {name: hic, plugin: " + c_so + ", config: {greeting: hey}}\n"
      "  - {name: hiclang, plugin: " + clang_so + "}\n"
      "  - {name: proc, plugin: " + proc_so + ", config: {interval: 50ms}}\n";
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
    // The C plugin and the clang-built one answer too.
    Run r = agent.ctl({"call", "hic.greet", "name=c"});
    INFO("hostlet-ctl call hic.greet name=c:\n" << r.out << r.err << "agent log:\n" << agent.log());
    CHECK(r.out == "ok\n  text=hey, c!\n");
    r = agent.ctl({"call", "hiclang.greet", "name=clang"});
    INFO("hostlet-ctl call hiclang.greet name=clang:\n" << r.out << r.err << "agent log:\n" << agent.log());
    CHECK(r.out == "ok\n  text=hello, clang!\n");
  }
  {
    // procinfo: two offloaded actions, each with a clear error for bad input.
    auto call = [&](std::vector<std::string> args) {
      args.insert(args.begin(), "call");
      Run r = agent.ctl(args);
      UNSCOPED_INFO("hostlet-ctl call " << args[1] << " " << (args.size() > 2 ? args[2] : "") << ":\n"
                                        << r.out << r.err << "agent log:\n" << agent.log());
      return r;
    };
    Run r = call({"proc.process", "pid=" + std::to_string(agent.process().pid())});
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("  Name=hostlet\n") != std::string::npos);
    CHECK(r.out.find("  State=") != std::string::npos);
    r = call({"proc.process", "pid=abc"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("pid must be a number, not 'abc'") != std::string::npos);
    r = call({"proc.process", "pid=999999999"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("cannot read /proc/999999999/status") != std::string::npos);
    r = call({"proc.meminfo", "key=MemTotal"});
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("  MemTotal=") != std::string::npos);
    r = call({"proc.meminfo", "key=Nope"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("no field 'Nope' in /proc/meminfo") != std::string::npos);
    r = call({"proc.meminfo"});
    CHECK(r.err.find("missing attribute 'key'") != std::string::npos);
    // Its timed event, then a reload (the tick coroutine of the old instance
    // ends at its stop) and the event again from the new instance.
    for (int round = 0; round < 2; round++) {
      Process events({env_path("HOSTLET_CTL"), "-s", agent.control_socket(), "events", "--type", "memory"});
      bool seen =
          hostlet::test::wait_until([&] { return events.out().find(" proc memory MemAvailable=") != std::string::npos; });
      INFO("round " << round << ": hostlet-ctl events --type memory:\n" << events.out() << events.err() << "agent log:\n"
                    << agent.log());
      CHECK(seen);
      events.stop(SIGINT);
      if (round == 0) must_run({env_path("HOSTLET_CTL"), "-s", agent.control_socket(), "reload", "proc"});
    }
    CHECK(agent.log().find("coroutine threw") == std::string::npos);
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
    for (const char* s : {"greeting", "tick_interval", "greet", "tick"}) CHECK(r.out.find(s) != std::string::npos);
  }
  {
    // The timer publishes tick every 50ms.
    Process events({env_path("HOSTLET_CTL"), "-s", agent.control_socket(), "events", "--type", "tick"});
    bool ticked =
        hostlet::test::wait_until([&] { return events.out().find("hello tick n=") != std::string::npos; });
    INFO("hostlet-ctl events --type tick:\n" << events.out() << events.err() << "agent log:\n" << agent.log());
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
