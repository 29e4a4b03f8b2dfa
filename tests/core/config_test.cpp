// Tests for core/config.cpp: the agent's YAML config and plugin schemas.
#include "config.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using namespace hostlet;

namespace {

// YAML text written as a raw string starting on the line after R"( so that
// line numbers in the test read as they do in the source.
std::string yaml(const char* text) {
  std::string s = text;
  if (!s.empty() && s[0] == '\n') s.erase(0, 1);
  return s;
}

struct Parsed {
  Config cfg;
  ConfigErrors errs;
  bool ok = false;
  std::vector<std::string> lines() const {
    std::vector<std::string> v;
    for (const ConfigError& e : errs) v.push_back(e.str());
    return v;
  }
};

Parsed parse(const std::string& text) {
  Parsed p;
  p.ok = parse_config(text, "test.yaml", p.cfg, p.errs);
  return p;
}

// Parses text that must produce exactly one error, and returns it as FILE:LINE:COLUMN: message.
std::string only_error(const std::string& text) {
  Parsed p = parse(text);
  CHECK_FALSE(p.ok);
  CAPTURE(p.lines());
  REQUIRE(p.errs.size() == 1);
  return p.errs[0].str();
}

struct Validated {
  ConfigValues values;
  ConfigErrors errs;
  bool ok = false;
  std::vector<std::string> lines() const {
    std::vector<std::string> v;
    for (const ConfigError& e : errs) v.push_back(e.str());
    return v;
  }
};

// Validates the `config:` of the first instance in `text` against `schema`.
Validated validate(const std::string& text, const hostlet_config_key* schema) {
  Parsed p = parse(text);
  CAPTURE(p.lines());
  REQUIRE(p.ok);
  REQUIRE(p.cfg.plugins.size() == 1);
  Validated v;
  const InstanceSection& inst = p.cfg.plugins[0];
  v.ok = validate_plugin_config("test.yaml", inst.config, inst.mark, schema, v.values, v.errs);
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------
// The whole file

TEST_CASE("config: a full config with every key parses to the right values") {
  const Parsed p = parse(yaml(R"(
agent:
  control_socket: /tmp/hostlet.sock
  control_mode: 0660
  control_max_connections: 8
  control_max_line: 64KiB
  plugin_dir: /opt/hostlet/plugins
  threadpool: 16
  log_level: debug
  event_queue: 1024
  event_batch: 32
  lag_warn: 20ms
  shutdown_timeout: 2s
  reload_timeout: 1m
  action_timeout: 1500
plugins:
  - name: virt
    plugin: libvirt
    max_inflight: 8
    max_queue: 0
    offload_timeout: 30s
    watch: yes
    config: {uri: "test:///default"}
  - name: notify
    plugin: ./build/plugins/unixsock.so
rules:
  - name: start-vms
    on:   {source: notify, type: "vm.*", attrs: {name: "vm[0-9]*", host: h1}}
    do:   virt.domain.start
    with: {name: "${name}"}
    debounce: 250ms
    rate_limit: 30/m
  - on: {type: sysfs.changed}
    do: [virt.domain.list, notify.reply]
)"));
  CAPTURE(p.lines());
  REQUIRE(p.ok);
  REQUIRE(p.errs.empty());
  const Config& c = p.cfg;
  CHECK(c.file == "test.yaml");

  CHECK(c.agent.control_socket == "/tmp/hostlet.sock");
  CHECK(c.agent.control_mode == 0660);
  CHECK(c.agent.control_max_connections == 8);
  CHECK(c.agent.control_max_line == 64 * 1024);
  CHECK(c.agent.plugin_dir == "/opt/hostlet/plugins");
  CHECK(c.agent.threadpool == 16);
  CHECK(c.agent.log_level == "debug");
  CHECK(c.agent.event_queue == 1024);
  CHECK(c.agent.event_batch == 32);
  CHECK(c.agent.lag_warn_ms == 20);
  CHECK(c.agent.shutdown_timeout_ms == 2000);
  CHECK(c.agent.reload_timeout_ms == 60000);
  CHECK(c.agent.action_timeout_ms == 1500);
  CHECK(c.agent.mark.line == 2);
  CHECK(c.agent.mark.column == 3);

  REQUIRE(c.plugins.size() == 2);
  const InstanceSection& virt = c.plugins[0];
  CHECK(virt.name == "virt");
  CHECK(virt.plugin == "libvirt");
  CHECK(virt.max_inflight == 8);
  CHECK(virt.max_queue == 0);
  CHECK(virt.offload_timeout_ms == 30000);
  CHECK(virt.watch);
  REQUIRE(virt.config.IsMap());
  CHECK(virt.config["uri"].as<std::string>() == "test:///default");
  CHECK(virt.mark.line == 16);
  CHECK(virt.mark.column == 5);
  CHECK(virt.name_mark.line == 16);
  CHECK(virt.name_mark.column == 11);
  CHECK(virt.plugin_mark.line == 17);
  CHECK(virt.plugin_mark.column == 13);
  CHECK(virt.config_mark.line == 22);
  CHECK(virt.config_mark.column == 13);

  const InstanceSection& notify = c.plugins[1];
  CHECK(notify.name == "notify");
  CHECK(notify.plugin == "./build/plugins/unixsock.so");
  CHECK(notify.max_inflight == 4);
  CHECK(notify.max_queue == 1024);
  CHECK(notify.offload_timeout_ms == 0);
  CHECK_FALSE(notify.watch);
  CHECK_FALSE(notify.config.IsDefined());
  CHECK(notify.config_mark.line == notify.mark.line);

  REQUIRE(c.rules.size() == 2);
  const RuleSection& r0 = c.rules[0];
  CHECK(r0.name == "start-vms");
  CHECK(r0.mark.line == 26);
  CHECK(r0.mark.column == 5);
  CHECK(r0.source == "notify");
  CHECK(r0.type == "vm.*");
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  CHECK(r0.attrs == Pairs{{"name", "vm[0-9]*"}, {"host", "h1"}});
  REQUIRE(r0.actions.size() == 1);
  CHECK(r0.actions[0].first == "virt.domain.start");
  CHECK(r0.actions[0].second.line == 28);
  CHECK(r0.actions[0].second.column == 11);
  CHECK(r0.with == Pairs{{"name", "${name}"}});
  CHECK(r0.with_mark.line == 29);
  CHECK(r0.with_mark.column == 11);
  CHECK(r0.debounce_ms == 250);
  CHECK(r0.rate_limit == Approx(0.5));

  const RuleSection& r1 = c.rules[1];
  CHECK(r1.name.empty());
  CHECK(r1.source.empty());
  CHECK(r1.type == "sysfs.changed");
  CHECK(r1.attrs.empty());
  REQUIRE(r1.actions.size() == 2);
  CHECK(r1.actions[0].first == "virt.domain.list");
  CHECK(r1.actions[1].first == "notify.reply");
  CHECK(r1.actions[1].second.line == 33);
  CHECK(r1.actions[1].second.column == 28);
  CHECK(r1.with.empty());
  CHECK(r1.debounce_ms == 0);
  CHECK(r1.rate_limit == 0);
}

TEST_CASE("config: an empty document is a valid config with defaults and no plugins") {
  for (const char* text : {"", "\n", "# only a comment\n", "~\n", "---\n"}) {
    CAPTURE(text);
    const Parsed p = parse(text);
    CHECK(p.ok);
    CHECK(p.errs.empty());
    CHECK(p.cfg.plugins.empty());
    CHECK(p.cfg.rules.empty());
    CHECK(p.cfg.agent.threadpool == 4);
    CHECK(p.cfg.agent.control_mode == 0600);
    CHECK(p.cfg.agent.log_level == "info");
  }
}

TEST_CASE("config: empty sections are valid and keep the defaults") {
  const Parsed p = parse("agent:\nplugins:\nrules: []\n");
  CAPTURE(p.lines());
  CHECK(p.ok);
  CHECK(p.cfg.agent.event_queue == 65536);
  CHECK(p.cfg.plugins.empty());
}

TEST_CASE("config: parsing again resets the previous result") {
  Config c;
  ConfigErrors errs;
  REQUIRE(parse_config("plugins: [{name: a, plugin: b}]\n", "one.yaml", c, errs));
  REQUIRE(parse_config("", "two.yaml", c, errs));
  CHECK(c.plugins.empty());
  CHECK(c.file == "two.yaml");
}

// ---------------------------------------------------------------------------
// Error positions and messages

TEST_CASE("config: unknown agent key is reported with line, column and suggestion") {
  CHECK(only_error(yaml(R"(
agent:
  log_level: info
  threadpol: 8
)")) == "test.yaml:3:3: agent: unknown key 'threadpol'; did you mean 'threadpool'?");
  // Nested deeper: the column is the key's.
  CHECK(only_error(yaml(R"(
plugins:
  - name: a
    plugin: b
    max_infligt: 3
)")) == "test.yaml:4:5: plugins[0]: unknown key 'max_infligt'; did you mean 'max_inflight'?");
}

TEST_CASE("config: unknown key far from every known key gets no suggestion") {
  CHECK(only_error("agent:\n  colour: blue\n") == "test.yaml:2:3: agent: unknown key 'colour'");
}

TEST_CASE("config: unknown top-level key is reported with a suggestion") {
  CHECK(only_error("agent: {}\nplugin: []\n") ==
        "test.yaml:2:1: unknown top-level key 'plugin'; did you mean 'plugins'?");
  CHECK(only_error("logging: {}\n") == "test.yaml:1:1: unknown top-level key 'logging'");
}

TEST_CASE("config: a value of the wrong type is reported at the value") {
  CHECK(only_error("agent:\n  threadpool: many\n") ==
        "test.yaml:2:15: agent.threadpool: expected an integer, got 'many'");
  CHECK(only_error("agent:\n  threadpool: [1, 2]\n") ==
        "test.yaml:2:15: agent.threadpool: expected an integer, got a sequence");
  CHECK(only_error("agent:\n  plugin_dir: {a: b}\n") ==
        "test.yaml:2:15: agent.plugin_dir: expected a string, got a mapping");
  CHECK(only_error("agent:\n  threadpool: 4.5\n") ==
        "test.yaml:2:15: agent.threadpool: expected an integer, got '4.5'");
  CHECK(only_error("agent: [1]\n") == "test.yaml:1:8: agent: expected a mapping, got a sequence");
  CHECK(only_error("plugins: {virt: {plugin: libvirt}}\n") ==
        "test.yaml:1:10: plugins: expected a sequence of instances ('- name: ...'), got a mapping");
  CHECK(only_error("rules: on\n") ==
        "test.yaml:1:8: rules: expected a sequence of rules ('- on: ...'), got 'on'");
}

TEST_CASE("config: an out-of-range value names the path and the bounds") {
  CHECK(only_error(yaml(R"(
plugins:
  - {name: a, plugin: x}
  - name: b
    plugin: x
    max_inflight: 0
)")) == "test.yaml:5:19: plugins[1].max_inflight: must be between 1 and 4096, got 0");
  CHECK(only_error("agent: {threadpool: 1025}\n") ==
        "test.yaml:1:21: agent.threadpool: must be between 1 and 1024, got 1025");
  CHECK(only_error("agent: {threadpool: -1}\n") ==
        "test.yaml:1:21: agent.threadpool: must be between 1 and 1024, got -1");
  CHECK(only_error("agent: {event_queue: 8}\n") ==
        "test.yaml:1:22: agent.event_queue: must be between 16 and 16777216, got 8");
  CHECK(only_error("plugins: [{name: a, plugin: b, max_queue: 1000001}]\n") ==
        "test.yaml:1:43: plugins[0].max_queue: must be between 0 and 1000000, got 1000001");
  CHECK(only_error("agent: {lag_warn: 2m}\n") ==
        "test.yaml:1:19: agent.lag_warn: must be between 1ms and 1m, got 2m");
  CHECK(only_error("agent: {control_max_line: 2GiB}\n") ==
        "test.yaml:1:27: agent.control_max_line: must be between 64 and 1GiB bytes, got 2GiB");
}

TEST_CASE("config: an integer too large for 64 bits is not an integer") {
  CHECK(only_error("agent: {threadpool: 99999999999999999999}\n") ==
        "test.yaml:1:21: agent.threadpool: expected an integer, got '99999999999999999999'");
}

TEST_CASE("config: every error in the file is reported, not only the first") {
  const Parsed p = parse(yaml(R"(
agent:
  threadpol: 8
  log_level: loud
  lag_warn: soon
plugins:
  - name: bad name
    plugin: x
    max_inflight: 0
  - plugin: y
rules:
  - on: {}
    do: nothing
bogus: 1
)"));
  CHECK_FALSE(p.ok);
  CHECK(p.lines() == std::vector<std::string>{
                         "test.yaml:2:3: agent: unknown key 'threadpol'; did you mean 'threadpool'?",
                         "test.yaml:3:14: agent.log_level: expected one of error, warn, info, debug, "
                         "got 'loud'",
                         "test.yaml:4:13: agent.lag_warn: expected a duration such as 250ms, 5s, 2m "
                         "or 1h, got 'soon'",
                         "test.yaml:6:11: plugins[0].name: must be 1 to 64 characters of A-Z, a-z, "
                         "0-9, '_' and '-', got 'bad name'",
                         "test.yaml:8:19: plugins[0].max_inflight: must be between 1 and 4096, got 0",
                         "test.yaml:9:5: plugins[1]: missing required key 'name'",
                         "test.yaml:11:9: rules[0].on: needs 'source' or 'type' (or both)",
                         "test.yaml:12:9: rules[0].do: expected an action '<instance>.<verb>' such "
                         "as 'virt.domain.start', got 'nothing'",
                         "test.yaml:13:1: unknown top-level key 'bogus'",
                     });
}

TEST_CASE("config: a YAML syntax error is one error at the parser's line and column") {
  const Parsed p = parse("agent:\n  threadpool: [1, 2\nplugins: []\n");
  CHECK_FALSE(p.ok);
  REQUIRE(p.errs.size() == 1);
  CHECK(p.errs[0].file == "test.yaml");
  CHECK(p.errs[0].mark.line == 3);
  CHECK(p.errs[0].mark.column == 8);
  CHECK(p.errs[0].str() == "test.yaml:3:8: end of sequence flow not found");

  CHECK(only_error("agent:\n  a: b\n c: d\n") == "test.yaml:3:2: end of map not found");
  CHECK(only_error("agent: {threadpool: 4\n") == "test.yaml:2:1: end of map flow not found");
}

TEST_CASE("config: a non-mapping root is an error") {
  CHECK(only_error("- agent\n") ==
        "test.yaml:1:1: expected a mapping with 'agent', 'plugins' and 'rules', got a sequence");
  CHECK(only_error("hello\n") ==
        "test.yaml:1:1: expected a mapping with 'agent', 'plugins' and 'rules', got 'hello'");
}

TEST_CASE("config: a second YAML document is an error") {
  CHECK(only_error("agent: {}\n---\nagent: {}\n") ==
        "test.yaml:3:1: expected one YAML document, found another");
}

TEST_CASE("config: a duplicate key is reported at the second, naming the first's line") {
  CHECK(only_error("agent:\n  threadpool: 2\n  threadpool: 3\n") ==
        "test.yaml:3:3: agent: duplicate key 'threadpool' (first at line 2)");
  const Parsed p = parse("agent:\n  threadpool: 2\n  threadpool: 3\n");
  CHECK(p.cfg.agent.threadpool == 2);  // the first one counts
  CHECK(only_error("agent: {}\nagent: {}\n") == "test.yaml:2:1: top level: duplicate key 'agent' (first at line 1)");
}

TEST_CASE("config: a key that is not a scalar is reported") {
  CHECK(only_error("agent:\n  ? [a, b]\n  : 1\n") ==
        "test.yaml:2:5: agent: expected a key name, got a sequence");
}

TEST_CASE("config: an empty value is reported at its key") {
  // yaml-cpp marks an empty value at the next token; the key is what to fix.
  CHECK(only_error("agent:\n  threadpool:\n  log_level: info\n") ==
        "test.yaml:2:3: agent.threadpool: expected an integer, got an empty value");
  CHECK(only_error("agent:\n  threadpool:") ==
        "test.yaml:2:3: agent.threadpool: expected an integer, got an empty value");
  // An explicit null is where it is written.
  CHECK(only_error("agent:\n  threadpool: ~\n") ==
        "test.yaml:2:15: agent.threadpool: expected an integer, got an empty value");
}

// ---------------------------------------------------------------------------
// agent:

TEST_CASE("config: control_mode is octal when written with a leading 0") {
  auto mode = [](const char* v) {
    Parsed p = parse(std::string("agent: {control_mode: ") + v + "}\n");
    CAPTURE(v, p.lines());
    REQUIRE(p.ok);
    return p.cfg.agent.control_mode;
  };
  CHECK(mode("0600") == 0600);
  CHECK(mode("\"0660\"") == 0660);
  CHECK(mode("'0640'") == 0640);
  CHECK(mode("0o700") == 0700);
  CHECK(mode("0") == 0);
  CHECK(mode("0777") == 0777);
  CHECK(mode("384") == 0600);  // decimal
  CHECK(only_error("agent: {control_mode: 0800}\n") ==
        "test.yaml:1:23: agent.control_mode: expected a file mode such as \"0600\", got '0800'");
  CHECK(only_error("agent: {control_mode: 01000}\n") ==
        "test.yaml:1:23: agent.control_mode: must be a file mode between 0 and 0777, got 01000");
  CHECK(only_error("agent: {control_mode: 600}\n") ==
        "test.yaml:1:23: agent.control_mode: must be a file mode between 0 and 0777, got 600");
  CHECK(only_error("agent: {control_mode: rw}\n") ==
        "test.yaml:1:23: agent.control_mode: expected a file mode such as \"0600\", got 'rw'");
  CHECK(only_error("agent: {control_mode: -1}\n") ==
        "test.yaml:1:23: agent.control_mode: expected a file mode such as \"0600\", got '-1'");
}

TEST_CASE("config: log_level must be one of error, warn, info, debug") {
  for (const char* level : {"error", "warn", "info", "debug"}) {
    const Parsed p = parse(std::string("agent: {log_level: ") + level + "}\n");
    CHECK(p.ok);
    CHECK(p.cfg.agent.log_level == level);
  }
  CHECK(only_error("agent: {log_level: wrn}\n") ==
        "test.yaml:1:20: agent.log_level: expected one of error, warn, info, debug, got 'wrn'; did "
        "you mean 'warn'?");
}

TEST_CASE("config: agent durations accept units and plain milliseconds") {
  const Parsed p = parse("agent: {lag_warn: 5, shutdown_timeout: 0, reload_timeout: 1.5s, action_timeout: 1h}\n");
  CAPTURE(p.lines());
  REQUIRE(p.ok);
  CHECK(p.cfg.agent.lag_warn_ms == 5);
  CHECK(p.cfg.agent.shutdown_timeout_ms == 0);
  CHECK(p.cfg.agent.reload_timeout_ms == 1500);
  CHECK(p.cfg.agent.action_timeout_ms == 3600000);
  CHECK(only_error("agent: {action_timeout: 0}\n") ==
        "test.yaml:1:25: agent.action_timeout: must be between 1ms and 24h, got 0");
}

TEST_CASE("config: control_socket must fit in a Unix socket address") {
  const std::string long_path = "/" + std::string(107, 's');
  CHECK(only_error("agent: {control_socket: " + long_path + "}\n") ==
        "test.yaml:1:25: agent.control_socket: a Unix socket path must be shorter than 108 bytes, "
        "got 108");
  CHECK(only_error("agent: {control_socket: ''}\n") ==
        "test.yaml:1:25: agent.control_socket: must not be empty");
}

// ---------------------------------------------------------------------------
// plugins:

TEST_CASE("config: duplicate instance names are reported at the second, naming the first's line") {
  CHECK(only_error(yaml(R"(
plugins:
  - name: virt
    plugin: libvirt
  - name: other
    plugin: libvirt
  - name: virt
    plugin: sysfs
)")) == "test.yaml:6:11: plugins[2].name: duplicate instance name 'virt' (first at line 2)");
}

TEST_CASE("config: missing required instance keys are reported at the instance's mapping") {
  const Parsed p = parse("plugins:\n  - max_inflight: 2\n");
  CHECK(p.lines() == std::vector<std::string>{
                         "test.yaml:2:5: plugins[0]: missing required key 'name'",
                         "test.yaml:2:5: plugins[0]: missing required key 'plugin'",
                     });
  CHECK(only_error("plugins:\n  - virt\n") ==
        "test.yaml:2:5: plugins[0]: expected a mapping with 'name' and 'plugin', got 'virt'");
}

TEST_CASE("config: instance names are 1 to 64 characters of letters, digits, '_' and '-'") {
  CHECK(parse("plugins: [{name: A-z_09, plugin: p}]\n").ok);
  CHECK(parse("plugins: [{name: " + std::string(64, 'n') + ", plugin: p}]\n").ok);
  CHECK(only_error("plugins: [{name: " + std::string(65, 'n') + ", plugin: p}]\n") ==
        "test.yaml:1:18: plugins[0].name: must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and "
        "'-', got '" + std::string(65, 'n') + "'");
  CHECK(only_error("plugins: [{name: 'a.b', plugin: p}]\n") ==
        "test.yaml:1:18: plugins[0].name: must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and "
        "'-', got 'a.b'");
  CHECK(only_error("plugins: [{name: '', plugin: p}]\n") ==
        "test.yaml:1:18: plugins[0].name: must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and "
        "'-', got ''");
  CHECK(only_error("plugins: [{name: hostlet, plugin: p}]\n") ==
        "test.yaml:1:18: plugins[0].name: 'hostlet' is reserved for the agent's own events");
}

TEST_CASE("config: an instance's watch is a boolean and plugin a non-empty string") {
  CHECK(only_error("plugins: [{name: a, plugin: b, watch: maybe}]\n") ==
        "test.yaml:1:39: plugins[0].watch: expected true or false, got 'maybe'");
  CHECK(only_error("plugins: [{name: a, plugin: ''}]\n") ==
        "test.yaml:1:29: plugins[0].plugin: must not be empty");
  const Parsed p = parse("plugins: [{name: a, plugin: b, watch: off, offload_timeout: 2m}]\n");
  REQUIRE(p.ok);
  CHECK_FALSE(p.cfg.plugins[0].watch);
  CHECK(p.cfg.plugins[0].offload_timeout_ms == 120000);
}

TEST_CASE("config: an instance's config is kept as a mapping, may be empty, and nothing else") {
  const Parsed p = parse(yaml(R"(
plugins:
  - name: a
    plugin: b
    config:
  - name: c
    plugin: d
    config:
      uri: x
      nested: {deep: [1, 2]}
)"));
  CAPTURE(p.lines());
  REQUIRE(p.ok);
  CHECK(p.cfg.plugins[0].config.IsNull());
  CHECK(p.cfg.plugins[0].config_mark.line == 4);  // the key's line: the value is empty
  CHECK(p.cfg.plugins[0].config_mark.column == 5);
  CHECK(p.cfg.plugins[1].config.IsMap());
  CHECK(p.cfg.plugins[1].config["nested"]["deep"][1].as<int>() == 2);
  CHECK(p.cfg.plugins[1].config_mark.line == 8);
  CHECK(p.cfg.plugins[1].config_mark.column == 7);

  CHECK(only_error("plugins: [{name: a, plugin: b, config: [x]}]\n") ==
        "test.yaml:1:40: plugins[0].config: expected a mapping, got a sequence");
}

// ---------------------------------------------------------------------------
// rules:

TEST_CASE("config: a rule's do is one action or a non-empty list of '<instance>.<verb>'") {
  const Parsed p = parse("rules:\n  - {on: {type: a}, do: [x.y, x.y.z]}\n  - {on: {type: a}, do: s.t}\n");
  REQUIRE(p.ok);
  CHECK(p.cfg.rules[0].actions.size() == 2);
  CHECK(p.cfg.rules[1].actions[0].first == "s.t");

  CHECK(only_error("rules: [{on: {type: a}, do: []}]\n") ==
        "test.yaml:1:29: rules[0].do: must name at least one action");
  CHECK(only_error("rules: [{on: {type: a}, do: {x: y}}]\n") ==
        "test.yaml:1:29: rules[0].do: expected an action name or a list of them, got a mapping");
  for (const char* bad : {"virt", ".start", "virt.", "a..b", "'a b.c'"}) {
    CAPTURE(bad);
    const Parsed q = parse(std::string("rules: [{on: {type: a}, do: [x.y, ") + bad + "]}]\n");
    REQUIRE(q.errs.size() == 1);
    CHECK(q.errs[0].mark.column == 35);
    CHECK(q.errs[0].message.rfind("rules[0].do[1]: expected an action '<instance>.<verb>'", 0) == 0);
  }
  CHECK(only_error("rules: [{on: {type: a}, do: [x.y, [a.b]]}]\n") ==
        "test.yaml:1:35: rules[0].do[1]: expected a string, got a sequence");
}

TEST_CASE("config: a rule needs on and do, and on needs source or type") {
  const Parsed p = parse("rules:\n  - with: {a: b}\n");
  CHECK(p.lines() == std::vector<std::string>{
                         "test.yaml:2:5: rules[0]: missing required key 'on'",
                         "test.yaml:2:5: rules[0]: missing required key 'do'",
                     });
  CHECK(only_error("rules:\n  - on: {attrs: {a: b}}\n    do: x.y\n") ==
        "test.yaml:2:9: rules[0].on: needs 'source' or 'type' (or both)");
  CHECK(only_error("rules:\n  - on: vm.start\n    do: x.y\n") ==
        "test.yaml:2:9: rules[0].on: expected a mapping with 'source' and/or 'type', got 'vm.start'");
  // A misspelt key also leaves `on` without source or type: both are said, in file order.
  CHECK(parse("rules:\n  - on: {typ: a}\n    do: x.y\n").lines() ==
        std::vector<std::string>{
            "test.yaml:2:9: rules[0].on: needs 'source' or 'type' (or both)",
            "test.yaml:2:10: rules[0].on: unknown key 'typ'; did you mean 'type'?",
        });
  CHECK(only_error("rules: [{on: {type: ''}, do: x.y}]\n") ==
        "test.yaml:1:21: rules[0].on.type: must not be empty");
}

TEST_CASE("config: an unbalanced '[' in a glob is reported at the value") {
  CHECK(only_error(yaml(R"(
rules:
  - on:
      source: "virt[12"
      type: vm.start
    do: x.y
)")) == "test.yaml:3:15: rules[0].on.source: bad pattern 'virt[12': unbalanced '[' at position 5");
  CHECK(only_error("rules: [{on: {type: a, attrs: {name: 'vm[!'}}, do: x.y}]\n") ==
        "test.yaml:1:38: rules[0].on.attrs.name: bad pattern 'vm[!': unbalanced '[' at position 3");
  const Parsed p = parse("rules: [{on: {type: 'vm.[a-z]*', attrs: {n: '[]x]'}}, do: x.y}]\n");
  CAPTURE(p.lines());
  CHECK(p.ok);
}

TEST_CASE("config: attrs and with are mappings of strings") {
  CHECK(only_error("rules: [{on: {type: a, attrs: [x]}, do: x.y}]\n") ==
        "test.yaml:1:31: rules[0].on.attrs: expected a mapping of attribute names to strings, got a "
        "sequence");
  CHECK(only_error("rules: [{on: {type: a}, do: x.y, with: {a: [1]}}]\n") ==
        "test.yaml:1:44: rules[0].with.a: expected a string, got a sequence");
  CHECK(only_error("rules: [{on: {type: a}, do: x.y, with: {a: 1, a: 2}}]\n") ==
        "test.yaml:1:47: rules[0].with: duplicate key 'a' (first at line 1)");
  CHECK(only_error("rules: [{on: {type: a}, do: x.y, with: {a: 'x ${name'}}]\n") ==
        "test.yaml:1:44: rules[0].with.a: unterminated '${' at position 3 in 'x ${name'");
  CHECK(only_error("rules: [{on: {type: a}, do: x.y, with: {a: 'x${}'}}]\n") ==
        "test.yaml:1:44: rules[0].with.a: empty '${}' at position 2 in 'x${}'");
  const Parsed p = parse(
      "rules: [{on: {type: a}, do: x.y, with: {n: 5, t: 'a ${b} c', d: '$${x $ $'}}]\n");
  CAPTURE(p.lines());
  REQUIRE(p.ok);
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  CHECK(p.cfg.rules[0].with == Pairs{{"n", "5"}, {"t", "a ${b} c"}, {"d", "$${x $ $"}});
}

TEST_CASE("config: rate_limit is per second, or N/s, N/m, N/h") {
  auto rate = [](const char* v) {
    Parsed p = parse(std::string("rules: [{on: {type: a}, do: x.y, rate_limit: ") + v + "}]\n");
    CAPTURE(v, p.lines());
    REQUIRE(p.ok);
    return p.cfg.rules[0].rate_limit;
  };
  CHECK(rate("10") == Approx(10));
  CHECK(rate("0.5") == Approx(0.5));
  CHECK(rate("5/s") == Approx(5));
  CHECK(rate("30/m") == Approx(0.5));
  CHECK(rate("36/h") == Approx(0.01));
  CHECK(only_error("rules: [{on: {type: a}, do: x.y, rate_limit: 0}]\n") ==
        "test.yaml:1:46: rules[0].rate_limit: must be greater than 0 (leave it out for no limit), "
        "got 0");
  for (const char* bad : {"fast", "10/d", "-1/s", "/s", "nan", "inf", "1e999", "10 /s"}) {
    CAPTURE(bad);
    const Parsed q = parse(std::string("rules: [{on: {type: a}, do: x.y, rate_limit: '") + bad + "'}]\n");
    REQUIRE(q.errs.size() == 1);
    CHECK(q.errs[0].mark.column == 46);
  }
}

TEST_CASE("config: rule debounce is a duration and rule names are unique") {
  const Parsed p = parse(yaml(R"(
rules:
  - {name: r, on: {type: a}, do: x.y, debounce: 2s}
  - {name: r, on: {type: a}, do: x.y, debounce: later}
)"));
  CHECK(p.lines() == std::vector<std::string>{
                         "test.yaml:3:12: rules[1].name: duplicate rule name 'r' (first at line 2)",
                         "test.yaml:3:49: rules[1].debounce: expected a duration such as 250ms, 5s, "
                         "2m or 1h, got 'later'",
                     });
  REQUIRE(p.cfg.rules.size() == 2);
  CHECK(p.cfg.rules[0].debounce_ms == 2000);
}

// ---------------------------------------------------------------------------
// Files and error text

TEST_CASE("config: load_config_file reads a file and reports an unreadable one without a mark") {
  char path[] = "/tmp/hostlet-config-test-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream f(path);
    f << "agent:\n  threadpool: 2\n  bogus: 1\n";
  }
  Config c;
  ConfigErrors errs;
  CHECK_FALSE(load_config_file(path, c, errs));
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].str() == std::string(path) + ":3:3: agent: unknown key 'bogus'");
  CHECK(c.agent.threadpool == 2);
  CHECK(c.file == path);
  std::remove(path);

  errs.clear();
  CHECK_FALSE(load_config_file("/nonexistent/hostlet.yaml", c, errs));
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].mark.line == 0);
  CHECK(errs[0].str() == "/nonexistent/hostlet.yaml: cannot read the file: No such file or directory");

  errs.clear();
  CHECK_FALSE(load_config_file("/", c, errs));
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].str() == "/: cannot read the file: Is a directory");
}

TEST_CASE("config: ConfigError::str formats FILE:LINE:COLUMN, or FILE alone without a mark") {
  CHECK(ConfigError{"a.yaml", {3, 5}, "boom"}.str() == "a.yaml:3:5: boom");
  CHECK(ConfigError{"a.yaml", {}, "boom"}.str() == "a.yaml: boom");
}

TEST_CASE("config: mark_of is 1-based and zero for a node without a position") {
  const YAML::Node n = YAML::Load("a:\n  b: 1\n");
  const Mark m = mark_of(n["a"]["b"]);
  CHECK(m.line == 2);
  CHECK(m.column == 6);
  CHECK(mark_of(YAML::Node()).line == 0);
  const YAML::Node missing = n["nope"];
  CHECK(mark_of(missing).line == 0);
  const YAML::Node& cn = n;
  CHECK(mark_of(cn["zombie"]).line == 0);  // an invalid node
}

// ---------------------------------------------------------------------------
// Scalar parsers

TEST_CASE("config: parse_duration_ms accepts ms, s, m, h, fractions and plain ms") {
  CHECK(parse_duration_ms("0") == 0u);
  CHECK(parse_duration_ms("250") == 250u);
  CHECK(parse_duration_ms("250ms") == 250u);
  CHECK(parse_duration_ms("5s") == 5000u);
  CHECK(parse_duration_ms("2m") == 120000u);
  CHECK(parse_duration_ms("1h") == 3600000u);
  CHECK(parse_duration_ms("1.5s") == 1500u);
  CHECK(parse_duration_ms("0.25s") == 250u);
  CHECK(parse_duration_ms("1.500s") == 1500u);
  CHECK(parse_duration_ms("0.5m") == 30000u);
  CHECK(parse_duration_ms("007s") == 7000u);
  CHECK(parse_duration_ms("9223372036854775807") == 9223372036854775807u);
}

TEST_CASE("config: parse_duration_ms rejects negatives, overflow, fractions of a ms and garbage") {
  for (const char* bad : {"", "-1", "-1s", "+5s", "5x", "5 s", " 5s", "5s ", "s", "ms", "1.5", "0.5ms",
                          "1.0001s", "1.s", ".5s", "1e3", "5S", "5sec", "1h30m",
                          "9223372036854775808", "18446744073709551616", "2562047788015216h",
                          "0.0000000000000000001s", "0x10"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_duration_ms(bad).has_value());
  }
}

TEST_CASE("config: parse_size accepts bytes and K, M, G, T with or without iB") {
  CHECK(parse_size("0") == 0u);
  CHECK(parse_size("512") == 512u);
  CHECK(parse_size("512B") == 512u);
  CHECK(parse_size("64K") == 65536u);
  CHECK(parse_size("64KiB") == 65536u);
  CHECK(parse_size("1M") == 1048576u);
  CHECK(parse_size("1MiB") == 1048576u);
  CHECK(parse_size("2G") == 2147483648u);
  CHECK(parse_size("2GiB") == 2147483648u);
  CHECK(parse_size("1TiB") == 1099511627776u);
  CHECK(parse_size("1.5KiB") == 1536u);
  CHECK(parse_size("0.5M") == 524288u);
}

TEST_CASE("config: parse_size rejects negatives, overflow, partial bytes and garbage") {
  for (const char* bad : {"", "-1", "-1K", "1KB", "1kb", "1k", "1 K", "K", "1.5", "1.1K", "1Ki",
                          "1e3", "9223372036854775808", "8388608T", "99999999999999999999",
                          "1KiBB", "0x100"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_size(bad).has_value());
  }
}

TEST_CASE("config: did_you_mean picks the closest candidate within a third of the word") {
  const std::vector<std::string> keys = {"threadpool", "plugin_dir", "log_level", "lag_warn"};
  CHECK(did_you_mean("threadpol", keys) == "threadpool");
  CHECK(did_you_mean("thredpool", keys) == "threadpool");
  CHECK(did_you_mean("thraedpool", keys) == "threadpool");  // 2 edits, 10 letters
  CHECK(did_you_mean("loglevel", keys) == "log_level");
  CHECK(did_you_mean("lag_warn_ms", keys) == "lag_warn");  // 3 edits, 11 letters
  CHECK(did_you_mean("colour", keys).empty());
  CHECK(did_you_mean("ab", {"ac", "xy"}) == "ac");  // short words allow one edit
  CHECK(did_you_mean("ab", {"cd"}).empty());
  CHECK(did_you_mean("x", {}).empty());
  CHECK(did_you_mean("", {"a"}) == "a");
}

TEST_CASE("config: glob_syntax_error follows fnmatch bracket rules") {
  for (const char* ok : {"", "*", "vm?", "vm[0-9]", "vm[!0-9]*", "[^a]", "[]]", "[!]]", "[]a-]",
                         "[[:alpha:]]*", "[[:digit:][:upper:]]", "a]b", "\\[literal", "[a\\]]",
                         "[[.a.]]", "[[=e=]]"}) {
    CAPTURE(ok);
    CHECK(glob_syntax_error(ok).empty());
  }
  CHECK(glob_syntax_error("vm[12") == "unbalanced '[' at position 3");
  CHECK(glob_syntax_error("[") == "unbalanced '[' at position 1");
  CHECK(glob_syntax_error("[]") == "unbalanced '[' at position 1");
  CHECK(glob_syntax_error("[!]") == "unbalanced '[' at position 1");
  CHECK(glob_syntax_error("a[b]c[d") == "unbalanced '[' at position 6");
  CHECK(glob_syntax_error("[[:alfa:]]") == "unknown character class '[:alfa:]'");
  CHECK(glob_syntax_error("[[:alpha]") == "unterminated '[:' at position 2");
  CHECK(glob_syntax_error("abc\\") == "pattern ends with a lone '\\'");
}

// ---------------------------------------------------------------------------
// Plugin schemas

namespace {

const hostlet_config_key kSchema[] = {
    {"uri", HOSTLET_CONFIG_STRING, nullptr, "libvirt connection URI", 0, 0, HOSTLET_CONFIG_REQUIRED},
    {"label", HOSTLET_CONFIG_STRING, "host", "short name", 1, 8, 0},
    {"port", HOSTLET_CONFIG_INT, "8080", "TCP port", 1, 65535, 0},
    {"offset", HOSTLET_CONFIG_INT, "-3", "any integer", 0, 0, 0},
    {"verbose", HOSTLET_CONFIG_BOOL, "false", "log more", 0, 0, 0},
    {"ratio", HOSTLET_CONFIG_DOUBLE, "0.25", "a fraction", 0, 0, 0},
    {"interval", HOSTLET_CONFIG_DURATION, "5s", "poll interval", 100, 60000, 0},
    {"buffer", HOSTLET_CONFIG_SIZE, "64KiB", "read buffer", 1024, 1 << 20, 0},
    {"paths", HOSTLET_CONFIG_STRING_LIST, "[/sys/a, /sys/b]", "watched files", 0, 0, 0},
    {"cpus", HOSTLET_CONFIG_INT_LIST, "", "pinned CPUs", 0, 63, 0},
    {"extra", HOSTLET_CONFIG_STRING, nullptr, "no default", 0, 0, 0},
    {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0},
};

// An instance whose config is `body` (YAML flow mapping text, or empty), on line 4.
std::string instance(const std::string& body) {
  return "plugins:\n  - name: i\n    plugin: p\n    config: " + body + "\n";
}

}  // namespace

TEST_CASE("schema: every type is read from its YAML value") {
  const Validated v = validate(
      instance("{uri: 'qemu:///system', label: box, port: 22, offset: -7, verbose: on, ratio: 1.5, "
               "interval: 250ms, buffer: 4096, paths: [/a, /b, /c], cpus: [0, 2], extra: 42}"),
      kSchema);
  CAPTURE(v.lines());
  REQUIRE(v.ok);
  const ConfigValues& c = v.values;
  REQUIRE(c.find("uri"));
  CHECK(c.find("uri")->type == HOSTLET_CONFIG_STRING);
  CHECK(c.find("uri")->text == "qemu:///system");
  CHECK(c.find("label")->text == "box");
  CHECK(c.find("port")->i == 22);
  CHECK(c.find("port")->text == "22");
  CHECK(c.find("offset")->i == -7);
  CHECK(c.find("verbose")->b);
  CHECK(c.find("verbose")->text == "on");
  CHECK(c.find("ratio")->d == Approx(1.5));
  CHECK(c.find("interval")->i == 250);
  CHECK(c.find("interval")->text == "250ms");
  CHECK(c.find("interval")->type == HOSTLET_CONFIG_DURATION);
  CHECK(c.find("buffer")->i == 4096);
  CHECK(c.find("paths")->list == std::vector<std::string>{"/a", "/b", "/c"});
  CHECK(c.find("paths")->type == HOSTLET_CONFIG_STRING_LIST);
  CHECK(c.find("cpus")->list == std::vector<std::string>{"0", "2"});
  CHECK(c.find("cpus")->ilist == std::vector<int64_t>{0, 2});
  CHECK(c.find("extra")->text == "42");  // any scalar is a string
}

TEST_CASE("schema: absent keys take their defaults, or stay absent without one") {
  const Validated v = validate(instance("{uri: x}"), kSchema);
  CAPTURE(v.lines());
  REQUIRE(v.ok);
  const ConfigValues& c = v.values;
  CHECK(c.find("label")->text == "host");
  CHECK(c.find("port")->i == 8080);
  CHECK(c.find("offset")->i == -3);
  CHECK_FALSE(c.find("verbose")->b);
  CHECK(c.find("ratio")->d == Approx(0.25));
  CHECK(c.find("interval")->i == 5000);
  CHECK(c.find("buffer")->i == 65536);
  CHECK(c.find("paths")->list == std::vector<std::string>{"/sys/a", "/sys/b"});
  REQUIRE(c.find("cpus"));
  CHECK(c.find("cpus")->list.empty());
  CHECK(c.find("extra") == nullptr);
  CHECK(c.find("nope") == nullptr);
}

TEST_CASE("schema: every schema key is declared with its type, present or not") {
  const Validated v = validate(instance("{uri: x}"), kSchema);
  CHECK(v.values.declared("extra"));
  CHECK(v.values.declared_type("extra") == HOSTLET_CONFIG_STRING);
  CHECK(v.values.declared_type("cpus") == HOSTLET_CONFIG_INT_LIST);
  CHECK(v.values.declared_type("interval") == HOSTLET_CONFIG_DURATION);
  CHECK_FALSE(v.values.declared("nope"));
  CHECK_FALSE(v.values.declared_type("nope").has_value());
}

TEST_CASE("schema: a missing required key is reported at the instance with its description") {
  const Validated v = validate(instance("{port: 1}"), kSchema);
  CHECK_FALSE(v.ok);
  CHECK(v.lines() == std::vector<std::string>{
                         "test.yaml:2:5: config: missing required key 'uri' (libvirt connection URI)"});
  // No config at all is the same as an empty one.
  const Validated w = validate("plugins:\n  - name: i\n    plugin: p\n", kSchema);
  CHECK(w.lines() == v.lines());
}

TEST_CASE("schema: an unknown key is reported at the key with a suggestion") {
  const Validated v = validate(instance("{uri: x, prt: 1, zzz: 2}"), kSchema);
  CHECK(v.lines() == std::vector<std::string>{
                         "test.yaml:4:22: config: unknown key 'prt'; did you mean 'port'?",
                         "test.yaml:4:30: config: unknown key 'zzz'",
                     });
}

TEST_CASE("schema: wrong types are reported at the value") {
  const Validated v = validate(
      instance("{uri: [x], port: http, verbose: 2, ratio: half, interval: soon, buffer: big, "
               "paths: {a: b}, cpus: [1, x]}"),
      kSchema);
  CHECK(v.lines() ==
        std::vector<std::string>{
            "test.yaml:4:19: config.uri: expected a string, got a sequence",
            "test.yaml:4:30: config.port: expected an integer, got 'http'",
            "test.yaml:4:45: config.verbose: expected true or false, got '2'",
            "test.yaml:4:55: config.ratio: expected a number, got 'half'",
            "test.yaml:4:71: config.interval: expected a duration such as 250ms, 5s, 2m or 1h, got "
            "'soon'",
            "test.yaml:4:85: config.buffer: expected a size such as 4096, 64KiB, 1MiB or 2GiB, got "
            "'big'",
            "test.yaml:4:97: config.paths: expected a string or a list of strings, got a mapping",
            "test.yaml:4:115: config.cpus[1]: expected an integer, got 'x'",
        });
}

TEST_CASE("schema: values outside min..max are reported with the bounds") {
  const Validated v = validate(
      instance("{uri: x, label: waytoolong, port: 0, interval: 50ms, buffer: 2MiB, cpus: [1, 64]}"),
      kSchema);
  CHECK(v.lines() ==
        std::vector<std::string>{
            "test.yaml:4:29: config.label: length must be between 1 and 8 characters, got 10",
            "test.yaml:4:47: config.port: must be between 1 and 65535, got 0",
            "test.yaml:4:60: config.interval: must be between 100ms and 1m, got 50ms",
            "test.yaml:4:74: config.buffer: must be between 1KiB and 1MiB bytes, got 2MiB",
            "test.yaml:4:90: config.cpus[1]: must be between 0 and 63, got 64",
        });
  // min == max means unbounded.
  CHECK(validate(instance("{uri: x, offset: -9223372036854775808}"), kSchema).ok);
}

TEST_CASE("schema: a list key accepts a single scalar as a list of one") {
  const Validated v = validate(instance("{uri: x, paths: /only, cpus: 7}"), kSchema);
  CAPTURE(v.lines());
  REQUIRE(v.ok);
  CHECK(v.values.find("paths")->list == std::vector<std::string>{"/only"});
  CHECK(v.values.find("cpus")->ilist == std::vector<int64_t>{7});
  CHECK(v.values.find("cpus")->text == "7");
  const Validated e = validate(instance("{uri: x, paths: []}"), kSchema);
  REQUIRE(e.ok);
  CHECK(e.values.find("paths")->list.empty());
  const Validated bad = validate(instance("{uri: x, cpus: 64}"), kSchema);
  CHECK(bad.lines() ==
        std::vector<std::string>{"test.yaml:4:28: config.cpus: must be between 0 and 63, got 64"});
}

TEST_CASE("schema: bool accepts true/false, yes/no, on/off") {
  const hostlet_config_key schema[] = {{"b", HOSTLET_CONFIG_BOOL, nullptr, "", 0, 0, 0},
                                       {nullptr, HOSTLET_CONFIG_BOOL, nullptr, nullptr, 0, 0, 0}};
  for (auto [text, want] : std::vector<std::pair<const char*, bool>>{
           {"true", true}, {"True", true}, {"yes", true}, {"on", true},
           {"false", false}, {"no", false}, {"off", false}, {"OFF", false}}) {
    CAPTURE(text);
    const Validated v = validate(instance(std::string("{b: ") + text + "}"), schema);
    REQUIRE(v.ok);
    CHECK(v.values.find("b")->b == want);
  }
  CHECK_FALSE(validate(instance("{b: 1}"), schema).ok);
}

TEST_CASE("schema: a NULL schema accepts no keys") {
  ConfigValues out;
  ConfigErrors errs;
  const YAML::Node section = YAML::Load("a: 1");
  CHECK_FALSE(validate_plugin_config("f.yaml", section, {7, 5}, nullptr, out, errs));
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].str() == "f.yaml:1:1: config: unknown key 'a' (no keys are accepted here)");
  errs.clear();
  CHECK(validate_plugin_config("f.yaml", YAML::Node(), {7, 5}, nullptr, out, errs));
  CHECK(validate_plugin_config("f.yaml", YAML::Load("~"), {7, 5}, nullptr, out, errs));
  CHECK(errs.empty());
}

TEST_CASE("schema: a section that is not a mapping is an error") {
  ConfigValues out;
  ConfigErrors errs;
  CHECK_FALSE(validate_plugin_config("f.yaml", YAML::Load("\n[1, 2]"), {7, 5}, kSchema, out, errs));
  REQUIRE(errs.size() == 1);
  CHECK(errs[0].str() == "f.yaml:2:1: config: expected a mapping, got a sequence");
}

TEST_CASE("schema: a default that does not parse is a schema error naming the key") {
  const hostlet_config_key schema[] = {
      {"n", HOSTLET_CONFIG_INT, "ten", "", 0, 0, 0},
      {"d", HOSTLET_CONFIG_DURATION, "5 seconds", "", 0, 0, 0},
      {"r", HOSTLET_CONFIG_INT, "100", "", 1, 10, 0},
      {"l", HOSTLET_CONFIG_INT_LIST, "[1, ", "", 0, 0, 0},
      {"ok", HOSTLET_CONFIG_STRING, "*", "", 0, 0, 0},
      {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0}};
  ConfigValues out;
  ConfigErrors errs;
  CHECK_FALSE(validate_plugin_config("f.yaml", YAML::Node(), {7, 5}, schema, out, errs));
  std::vector<std::string> lines;
  for (const ConfigError& e : errs) lines.push_back(e.str());
  CHECK(lines == std::vector<std::string>{
                     "f.yaml:7:5: plugin schema: bad default for key 'n': expected an integer, got 'ten'",
                     "f.yaml:7:5: plugin schema: bad default for key 'd': expected a duration such as "
                     "250ms, 5s, 2m or 1h, got '5 seconds'",
                     "f.yaml:7:5: plugin schema: bad default for key 'r': must be between 1 and 10, got 100",
                     "f.yaml:7:5: plugin schema: bad default for key 'l': not valid YAML: end of sequence "
                     "flow not found",
                 });
  REQUIRE(out.find("ok"));
  CHECK(out.find("ok")->text == "*");  // scalar defaults are literal text
  CHECK(out.find("n") == nullptr);
}

TEST_CASE("schema: a schema with a duplicate key or an unknown type is reported") {
  hostlet_config_key schema[] = {
      {"a", HOSTLET_CONFIG_INT, nullptr, "", 0, 0, 0},
      {"a", HOSTLET_CONFIG_STRING, nullptr, "", 0, 0, 0},
      {"b", HOSTLET_CONFIG_STRING, nullptr, "", 0, 0, 0},
      {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0}};
  // What a C plugin can put there; a C++ cast to the enum would itself be undefined.
  const int bad_type = 99;
  static_assert(sizeof bad_type == sizeof schema[2].type);
  std::memcpy(&schema[2].type, &bad_type, sizeof bad_type);
  ConfigValues out;
  ConfigErrors errs;
  CHECK_FALSE(validate_plugin_config("f.yaml", YAML::Node(), {7, 5}, schema, out, errs));
  REQUIRE(errs.size() == 2);
  CHECK(errs[0].message == "plugin schema: key 'a' is declared twice");
  CHECK(errs[1].message == "plugin schema: key 'b' has an empty name or an unknown type 99");
  CHECK(out.declared_type("a") == HOSTLET_CONFIG_INT);
  CHECK_FALSE(out.declared("b"));
}

TEST_CASE("schema: the path overload prefixes messages with the given path") {
  ConfigValues out;
  ConfigErrors errs;
  CHECK_FALSE(validate_plugin_config("f.yaml", YAML::Load("port: x"), {7, 5}, kSchema, out, errs,
                                     "plugins[2].config"));
  std::vector<std::string> lines;
  for (const ConfigError& e : errs) lines.push_back(e.str());
  CHECK(lines == std::vector<std::string>{
                     "f.yaml:1:7: plugins[2].config.port: expected an integer, got 'x'",
                     "f.yaml:7:5: plugins[2].config: missing required key 'uri' (libvirt connection URI)",
                 });
}

TEST_CASE("schema: a duplicate key in the section is reported and the first value kept") {
  const Validated v = validate(instance("{uri: x, port: 1, port: 2}"), kSchema);
  CHECK(v.lines() == std::vector<std::string>{
                         "test.yaml:4:31: config: duplicate key 'port' (first at line 4)"});
  CHECK(v.values.find("port")->i == 1);
}
