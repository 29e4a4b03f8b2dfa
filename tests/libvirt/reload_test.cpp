// Reload as the agent's contract describes it, with the real libvirt.so and a
// private libvirtd: load a fresh copy and init it, stop and destroy the old
// instance, dlclose it, start the new one. libvirt keeps its event-loop
// callbacks (the bridge, never unmapped) and must keep no pointer into the
// old image: events and calls keep flowing through the new one.
#include <catch2/catch.hpp>

#include "libvirtd.hpp"
#include "mini_host.hpp"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <chrono>

namespace t = hostlet::test;
using namespace std::chrono;
using virt_test::MiniHost;

namespace {

void quiet(void*, virErrorPtr) {}

std::map<std::string, std::string> config(const virt_test::Libvirtd& d) {
  return {{"uri", d.uri()}, {"keepalive_interval", "1s"}, {"keepalive_count", "2"}, {"reconnect_min", "100ms"}};
}

bool connected(MiniHost& h) { return h.call("connection.info").attr("state") == "connected"; }

// define, start, destroy, undefine through a connection of the test's own.
void churn(const std::string& uri, const std::string& name) {
  virSetErrorFunc(nullptr, quiet);
  virConnectPtr c = virConnectOpen(uri.c_str());
  REQUIRE(c);
  virDomainPtr d = virDomainDefineXML(c, virt_test::domain_xml(name).c_str());
  REQUIRE(d);
  CHECK(virDomainCreate(d) == 0);
  CHECK(virDomainDestroy(d) == 0);
  CHECK(virDomainUndefine(d) == 0);
  virDomainFree(d);
  virConnectClose(c);
}

bool saw_churn(MiniHost& h, const std::string& name) {
  return h.saw("domain.lifecycle", {{"name", name}, {"event", "defined"}}) &&
         h.saw("domain.lifecycle", {{"name", name}, {"event", "started"}, {"detail", "booted"}}) &&
         h.saw("domain.lifecycle", {{"name", name}, {"event", "stopped"}, {"detail", "destroyed"}}) &&
         h.saw("domain.lifecycle", {{"name", name}, {"event", "undefined"}});
}

}  // namespace

TEST_CASE("reload: a new copy takes over, the old image is unmapped, events and calls flow", "[reload][daemon]") {
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    MiniHost old_host(&loop), new_host(&loop);
    REQUIRE(old_host.load(VIRT_PLUGIN_PATH, dir / "libvirt.1.so", "virt", config(d)) == 0);
    REQUIRE(old_host.start() == 0);
    REQUIRE(old_host.run_until([&] { return connected(old_host); }));
    churn(d.uri(), "before-reload");
    CHECK(old_host.run_until([&] { return saw_churn(old_host, "before-reload"); }));

    // The reload: init the new copy first, then stop, destroy and unload the old one.
    REQUIRE(new_host.load(VIRT_PLUGIN_PATH, dir / "libvirt.2.so", "virt", config(d)) == 0);
    REQUIRE(old_host.stop());
    CHECK(old_host.unload());  // its image is gone; libvirt must not call into it again
    REQUIRE(new_host.start() == 0);
    REQUIRE(new_host.run_until([&] { return connected(new_host); }));
    churn(d.uri(), "after-reload");
    CHECK(new_host.run_until([&] { return saw_churn(new_host, "after-reload"); }));
    CHECK(new_host.call("domain.list").ok);

    // Stop while the daemon hangs: done within the keepalive window, and unloadable.
    d.pause();
    auto t0 = steady_clock::now();
    CHECK(new_host.stop(seconds(15)));
    const double took = duration<double>(steady_clock::now() - t0).count();
    INFO("stopped in " << took << " s");
    CHECK(took < 8.0);
    CHECK(new_host.unload());
    d.resume();
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the hosts' own handles close
  CHECK(uv_loop_close(&loop) == 0);
}
