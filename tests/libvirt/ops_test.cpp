// The plugin's actions (plugins/libvirt/ops.cpp) against the real libvirt:
// in process (test:///default, a generated node of 1000 domains) and through
// a private libvirtd. No agent and no event loop: validate, then run, as the
// plugin does on the loop and on a pool thread.
#include <catch2/catch.hpp>

#include "libvirtd.hpp"
#include "ops.hpp"

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>

using namespace hostlet_virt;
using json = nlohmann::json;
namespace t = hostlet::test;

namespace {

// libvirt prints every error on stderr unless told otherwise; these tests expect many.
void quiet(void*, virErrorPtr) {}
const bool silenced = (virSetErrorFunc(nullptr, quiet), true);

struct ConnClose {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
using Conn = std::unique_ptr<virConnect, ConnClose>;

Conn open(const std::string& uri) {
  Conn c(virConnectOpen(uri.c_str()));
  if (!c) FAIL("cannot open " << uri << ": " << libvirt_failure("").error);
  return c;
}

const Op& op(std::string_view verb) {
  for (const Op& o : ops())
    if (verb == o.verb) return o;
  FAIL("no action " << verb);
  throw;  // unreachable
}

Outcome call(virConnectPtr c, std::string_view verb, Args a = {}) {
  const Op& o = op(verb);
  if (std::string e = o.validate(a); !e.empty()) return Outcome::failure(e);
  return o.run(c, a);
}

std::string attr(const Outcome& o, const std::string& key) {
  for (auto& [k, v] : o.attrs)
    if (k == key) return v;
  return "<absent>";
}

// Every action, in an order a domain's life allows, on any connection.
void every_action(virConnectPtr c) {
  const std::string name = "hostlet-ops-test";
  Outcome o = call(c, "domain.define", {{"xml", virt_test::domain_xml(name)}});
  REQUIRE(o.ok);
  CHECK(attr(o, "name") == name);
  const std::string uuid = attr(o, "uuid");
  CHECK(uuid.size() == 36);

  o = call(c, "domain.info", {{"name", name}});
  REQUIRE(o.ok);
  CHECK(attr(o, "state") == "shutoff");
  CHECK(attr(o, "id") == "<absent>");
  CHECK(attr(o, "persistent") == "true");
  CHECK(attr(o, "memory_kib") == "65536");

  o = call(c, "domain.start", {{"uuid", uuid}});
  REQUIRE(o.ok);
  CHECK(attr(o, "name") == name);
  CHECK(attr(o, "id") != "<absent>");
  CHECK(attr(call(c, "domain.info", {{"uuid", uuid}}), "state") == "running");

  REQUIRE(call(c, "domain.suspend", {{"name", name}}).ok);
  o = call(c, "domain.info", {{"name", name}});
  CHECK(attr(o, "state") == "paused");
  CHECK(attr(o, "reason") == "user");
  REQUIRE(call(c, "domain.resume", {{"name", name}}).ok);
  CHECK(attr(call(c, "domain.info", {{"name", name}}), "state") == "running");
  REQUIRE(call(c, "domain.reboot", {{"name", name}}).ok);

  o = call(c, "domain.list", {{"state", "running"}});
  REQUIRE(o.ok);
  json list = json::parse(o.data_json);
  bool found = false;
  for (auto& d : list)
    if (d["name"] == name) {
      found = true;
      CHECK(d["uuid"] == uuid);
      CHECK(d["state"] == "running");
      CHECK(d["id"].is_number());
    }
  CHECK(found);

  o = call(c, "domain.stats", {{"name", name}, {"stats", "state,cpu-total"}});
  REQUIRE(o.ok);
  list = json::parse(o.data_json);
  REQUIRE(list.size() == 1);
  CHECK(list[0]["name"] == name);
  CHECK(list[0]["stats"]["state.state"] == VIR_DOMAIN_RUNNING);
  o = call(c, "domain.stats", {{"nowait", "true"}, {"state", "running"}});
  REQUIRE(o.ok);
  CHECK(json::parse(o.data_json).size() >= 1);

  REQUIRE(call(c, "domain.shutdown", {{"name", name}}).ok);
  CHECK(attr(call(c, "domain.info", {{"name", name}}), "state") == "shutoff");
  // The test driver knows no start flags: the flag reaches libvirt, which refuses it.
  o = call(c, "domain.start", {{"name", name}, {"paused", "true"}});
  CHECK_FALSE(o.ok);
  CHECK(o.error.find("unsupported flags") != std::string::npos);
  REQUIRE(call(c, "domain.start", {{"name", name}}).ok);
  REQUIRE(call(c, "domain.destroy", {{"name", name}}).ok);
  o = call(c, "domain.info", {{"name", name}});
  CHECK(attr(o, "state") == "shutoff");
  CHECK(attr(o, "reason") == "destroyed");
  REQUIRE(call(c, "domain.undefine", {{"name", name}}).ok);
  o = call(c, "domain.info", {{"name", name}});
  CHECK_FALSE(o.ok);
  CHECK(o.code == VIR_ERR_NO_DOMAIN);

  o = call(c, "node.info");
  REQUIRE(o.ok);
  CHECK(attr(o, "hypervisor") == "TEST");
  CHECK(attr(o, "libvirt_version") == "9.0.0");
  CHECK(std::stoi(attr(o, "cpus")) > 0);
}

}  // namespace

TEST_CASE("ops: domain.list on test:///default lists its one running domain", "[ops]") {
  Conn c = open("test:///default");
  Outcome o = call(c.get(), "domain.list");
  REQUIRE(o.ok);
  CHECK(attr(o, "count") == "1");
  json list = json::parse(o.data_json);
  REQUIRE(list.size() == 1);
  CHECK(list[0]["name"] == "test");
  CHECK(list[0]["state"] == "running");
  CHECK(list[0]["id"] == 1);
  CHECK(json::parse(call(c.get(), "domain.list", {{"state", "shutoff"}}).data_json).empty());
}

TEST_CASE("ops: domain.list sorts by name bytes and gives each domain its own state", "[ops]") {
  // Names that share their first 8 bytes, are shorter than 8, differ only in
  // length, or are not ASCII: the sort compares an 8-byte prefix first.
  const std::vector<std::string> names = {"vm-10", "vm-1", "vm-2", "aaaaaaaa-2", "aaaaaaaa-10", "aaaaaaaa",
                                          "aaaaaaa", "b", "Z", "\xc3\xa9t\xc3\xa9", "aaaaaaaa-1"};
  Conn c = open("test:///default");  // has "test", running
  std::map<std::string, std::pair<std::string, std::string>> want = {{"test", {"running", "unknown"}}};
  for (size_t i = 0; i < names.size(); i++) {
    REQUIRE(call(c.get(), "domain.define", {{"xml", virt_test::domain_xml(names[i])}}).ok);
    want[names[i]] = {"shutoff", "unknown"};
    if (i % 3 == 0) continue;
    REQUIRE(call(c.get(), "domain.start", {{"name", names[i]}}).ok);
    want[names[i]] = {"running", "booted"};
    if (i % 3 == 1) continue;
    REQUIRE(call(c.get(), "domain.suspend", {{"name", names[i]}}).ok);
    want[names[i]] = {"paused", "user"};
  }
  Outcome o = call(c.get(), "domain.list");
  REQUIRE(o.ok);
  json list = json::parse(o.data_json);
  REQUIRE(list.size() == want.size());
  size_t i = 0;
  for (const auto& [name, st] : want) {  // std::map: ordered as std::string compares, byte by byte
    INFO("entry " << i << ": " << list[i].dump());
    CHECK(list[i]["name"] == name);
    CHECK(list[i]["state"] == st.first);
    CHECK(list[i]["reason"] == st.second);
    CHECK(list[i]["uuid"].get<std::string>().size() == 36);
    CHECK(list[i]["id"].is_null() == (st.first == "shutoff"));
    i++;
  }
}

TEST_CASE("ops: every action in process (test:///default)", "[ops]") {
  Conn c = open("test:///default");
  every_action(c.get());
}

TEST_CASE("ops: every action through a private libvirtd", "[ops][daemon]") {
  t::TempDir dir;
  virt_test::Libvirtd d(dir);
  REQUIRE(d.start());
  Conn c = open(d.uri());
  every_action(c.get());
}

TEST_CASE("ops: a node of 1000 domains: list, filters and stats", "[ops][scale]") {
  t::TempDir dir;
  const std::string path = dir.write("node.xml", virt_test::node_xml(1000, 600));
  Conn c = open("test://" + path);

  auto t0 = std::chrono::steady_clock::now();
  Outcome o = call(c.get(), "domain.list");
  auto dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(o.ok);
  json list = json::parse(o.data_json);
  REQUIRE(list.size() == 1000);
  CHECK(list[0]["name"] == "vm-0001");
  CHECK(list[999]["uuid"] == virt_test::domain_uuid(1000));
  std::printf("domain.list of 1000 domains in process: %.2f ms\n", dt);

  CHECK(json::parse(call(c.get(), "domain.list", {{"state", "running"}}).data_json).size() == 600);
  CHECK(json::parse(call(c.get(), "domain.list", {{"state", "shutoff"}}).data_json).size() == 400);
  CHECK(json::parse(call(c.get(), "domain.list", {{"state", "running,shutoff"}}).data_json).size() == 1000);
  CHECK(json::parse(call(c.get(), "domain.list", {{"state", "inactive"}}).data_json).size() == 400);

  o = call(c.get(), "domain.stats", {{"stats", "state"}});
  REQUIRE(o.ok);
  CHECK(attr(o, "count") == "1000");
  o = call(c.get(), "domain.info", {{"uuid", virt_test::domain_uuid(777)}});
  REQUIRE(o.ok);
  CHECK(attr(o, "name") == "vm-0777");
  CHECK(attr(o, "state") == "shutoff");
}

TEST_CASE("ops: bad input answers with a clear error", "[ops][bad]") {
  Conn c = open("test:///default");
  auto error = [&](std::string_view verb, Args a) {
    Outcome o = call(c.get(), verb, std::move(a));
    CHECK_FALSE(o.ok);
    return o;
  };

  Outcome o = error("domain.start", {});
  CHECK(o.error == "missing attribute 'name' or 'uuid'");
  CHECK(error("domain.info", {{"name", ""}}).error == "attribute 'name' is empty");
  CHECK(error("domain.define", {}).error == "missing attribute 'xml'");
  CHECK(error("domain.info", {{"uuid", "not-a-uuid"}}).error == "invalid uuid 'not-a-uuid'");
  o = error("domain.list", {{"state", "running,sleepy"}});
  CHECK(o.error.find("unknown state filter 'sleepy'") == 0);
  CHECK(o.error.find("running") != std::string::npos);
  CHECK(error("domain.start", {{"name", "test"}, {"paused", "maybe"}}).error ==
        "attribute 'paused' must be true or false, not 'maybe'");
  CHECK(error("domain.stats", {{"stats", "cpu,disk"}}).error.find("unknown stats group 'cpu'") == 0);
  CHECK(error("domain.stats", {{"name", "test"}, {"state", "running"}}).error.find("cannot be combined") !=
        std::string::npos);
  CHECK(error("domain.shutdown", {{"name", "test"}, {"mode", "gently"}}).error.find("unknown mode 'gently'") == 0);

  o = error("domain.info", {{"name", "no-such-domain"}});
  CHECK(o.code == VIR_ERR_NO_DOMAIN);
  CHECK(o.error.find("domain 'no-such-domain': ") == 0);
  CHECK(o.error.find("(libvirt error 42)") != std::string::npos);
  o = error("domain.destroy", {{"uuid", "00000000-0000-0000-0000-00000000beef"}});
  CHECK(o.code == VIR_ERR_NO_DOMAIN);

  o = error("domain.define", {{"xml", "<domain"}});
  CHECK(o.code != 0);
  CHECK(o.error.find("libvirt error") != std::string::npos);
  o = error("domain.define", {{"xml", "<domain type='test'><name>x</name></domain>"}});  // no memory, no os
  CHECK(o.code != 0);

  // Operations the domain's state does not allow (the test driver says "internal error").
  o = error("domain.start", {{"name", "test"}});
  CHECK(o.error.find("already running") != std::string::npos);
  o = error("domain.resume", {{"name", "test"}});
  CHECK(o.error.find("not paused") != std::string::npos);
}

TEST_CASE("ops: parse helpers", "[ops]") {
  unsigned f = 99;
  CHECK(parse_state_filter("", &f).empty());
  CHECK(f == 0);
  CHECK(parse_state_filter(" running , paused ", &f).empty());
  CHECK(f == (VIR_CONNECT_LIST_DOMAINS_RUNNING | VIR_CONNECT_LIST_DOMAINS_PAUSED));
  CHECK(parse_stats_groups("all", &f).empty());
  CHECK(f == 0);
  CHECK(parse_stats_groups("vcpu,block", &f).empty());
  CHECK(f == (VIR_DOMAIN_STATS_VCPU | VIR_DOMAIN_STATS_BLOCK));
  bool b = false;
  CHECK(parse_bool("yes", &b));
  CHECK(b);
  CHECK(parse_bool("0", &b));
  CHECK_FALSE(b);
  CHECK_FALSE(parse_bool("True", &b));
  CHECK(param_text(json(3)) == "3");
  CHECK(param_text(json("x")) == "x");
  CHECK(param_text(json(true)) == "true");
}
