// Plugins load with TMPDIR on a noexec tmpfs (common on hardened hosts) and
// leave nothing behind in it: the private copies are memory files. Needs root
// to mount the tmpfs (CI runs as root); skipped, saying so, otherwise.
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "support.hpp"

using hostlet::test::Agent;
using hostlet::test::env_path;
using hostlet::test::TempDir;

TEST_CASE("noexec: plugins load with TMPDIR on a noexec tmpfs and leave it empty") {
  TempDir dir;
  const std::string tmp = dir / "noexec-tmp";
  std::filesystem::create_directory(tmp);
  if (mount("tmpfs", tmp.c_str(), "tmpfs", MS_NOEXEC | MS_NOSUID | MS_NODEV, "size=16m") != 0) {
    WARN("cannot mount a tmpfs here (not root?): test skipped");
    return;
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{tmp};
  {
    Agent a(dir, "agent: {control_socket: \"@DIR@/control.sock\"}\n"
                 "plugins:\n"
                 "  - {name: w, plugin: " + env_path("HOSTLET_TEST_PLUGINS") + "/worker_v1.so}\n",
            {}, {{"TMPDIR", tmp}});
    REQUIRE(a.start());
    auto r = a.ctl({"call", "w.version"});
    INFO(a.log());
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("version") != std::string::npos);
    CHECK(a.ctl({"reload", "w"}).exit_code == 0);
    auto st = a.stop(SIGTERM);
    REQUIRE(st);
    CHECK(WEXITSTATUS(*st) == 0);
  }
  CHECK(std::filesystem::is_empty(tmp));
}
