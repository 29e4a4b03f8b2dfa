// Tests for core/config.cpp: the agent's config file, its sections and the
// errors `hostlet --check` prints for them.
#include "config.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "config_support.hpp"

using namespace hostlet;
using test::only_error;
using test::parse;
using test::Parsed;
using test::yaml;

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
  CHECK(p.errs[0].str() ==
        "test.yaml:3:8: the list '[' opened at line 2, column 15 is not closed (expected ',' or ']' here)");

  // libyaml's words for the common mistakes are rewritten into plain ones.
  CHECK(only_error("agent:\n  a: b\n c: d\n") ==
        "test.yaml:3:2: this line is indented to no key's column (the mapping that starts at line 1, column 1 has "
        "its keys in column 1; indent further to nest under a key)");
  CHECK(only_error("agent: {threadpool: 4\n") ==
        "test.yaml:2:1: the mapping '{' opened at line 1, column 8 is not closed (expected ',' or '}' here)");
  CHECK(only_error("agent:\n\tthreadpool: 4\n") == "test.yaml:2:1: a TAB character: YAML indents with spaces only");
  CHECK(only_error("agent:\n  x: \"\u00e9\"\n\tthreadpool: 4\n") ==
        "test.yaml:3:1: a TAB character: YAML indents with spaces only");
  CHECK(only_error("agent:\n  log_level: \"info\n") ==
        "test.yaml:3:1: the quoted string that starts at line 2, column 14 is not closed");
  CHECK(only_error("agent:\n  log_level: a: b\n") ==
        "test.yaml:2:15: ': ' inside a plain value (quote the value, or put a nested mapping on the next lines, "
        "indented)");
  // Anything else keeps libyaml's words and context.
  CHECK(only_error("agent:\n  - a\n  b: c\n") ==
        "test.yaml:3:3: did not find expected '-' indicator (while parsing a block collection that starts at line "
        "2, column 3)");
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

TEST_CASE("config: action_wait of the agent and of a rule; unset on a rule means the agent's") {
  const Parsed p = parse("agent: {action_wait: 250ms}\n"
                         "rules:\n"
                         "  - {on: {type: a}, do: x.y, action_wait: 0}\n"
                         "  - {on: {type: b}, do: x.y}\n");
  CAPTURE(p.lines());
  REQUIRE(p.ok);
  CHECK(p.cfg.agent.action_wait_ms == 250);
  REQUIRE(p.cfg.rules.size() == 2);
  CHECK(p.cfg.rules[0].action_wait_ms == 0);
  CHECK(p.cfg.rules[1].action_wait_ms == -1);
  CHECK(parse("agent: {}\n").cfg.agent.action_wait_ms == 10000);
  CHECK(only_error("agent: {action_wait: 25h}\n") ==
        "test.yaml:1:22: agent.action_wait: must be between 0ms and 24h, got 25h");
}

TEST_CASE("config: control_socket must fit in a Unix socket address") {
  const std::string long_path = "/" + std::string(107, 's');
  CHECK(only_error("agent: {control_socket: " + long_path + "}\n") ==
        "test.yaml:1:25: agent.control_socket: a Unix socket path must be shorter than 108 bytes, "
        "got 108");
  CHECK(only_error("agent: {control_socket: ''}\n") ==
        "test.yaml:1:25: agent.control_socket: must not be empty");
}

TEST_CASE("config: a path with a NUL or another control character is an error, printed escaped") {
  // A NUL would make the socket /tmp/a, not the path written.
  CHECK(only_error("agent: {control_socket: \"/tmp/a\\0/../b\"}\n") ==
        "test.yaml:1:25: agent.control_socket: a path must not contain control characters, got "
        "'/tmp/a\\x00/../b' (a NUL at byte 7)");
  CHECK(only_error("agent: {control_socket: \"/tmp/a\\rb\"}\n") ==
        "test.yaml:1:25: agent.control_socket: a path must not contain control characters, got "
        "'/tmp/a\\rb' (a control character at byte 7)");
  CHECK(only_error("agent: {plugin_dir: \"/usr/lib\\0x\"}\n") ==
        "test.yaml:1:21: agent.plugin_dir: a path must not contain control characters, got "
        "'/usr/lib\\x00x' (a NUL at byte 9)");
  CHECK(only_error("plugins: [{name: a, plugin: \"./a.so\\0\"}]\n") ==
        "test.yaml:1:29: plugins[0].plugin: a path must not contain control characters, got "
        "'./a.so\\x00' (a NUL at byte 7)");
  // Non-ASCII is not a control character.
  const Parsed p = parse("agent: {control_socket: /tmp/h\xc3\xa9.sock}\n");
  CHECK(p.ok);
  CHECK(p.cfg.agent.control_socket == "/tmp/h\xc3\xa9.sock");
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

TEST_CASE("config: keys with control characters are echoed escaped, never raw") {
  // A raw CR would move the terminal's cursor back over the file name.
  const Parsed cr = parse("agent:\n  \"evil\\rtest.yaml:1:1: all good\": 1\n");
  REQUIRE(cr.errs.size() == 1);
  CHECK(cr.errs[0].message.find('\r') != std::string::npos);  // kept as written
  CHECK(cr.errs[0].str() == "test.yaml:2:3: agent: unknown key 'evil\\rtest.yaml:1:1: all good'");
  CHECK(only_error("\"\\e[2J\\x7f\": 1\n") == "test.yaml:1:1: unknown top-level key '\\x1b[2J\\x7f'");
  CHECK(only_error("\"a\\nb\\tc\": 1\n") == "test.yaml:1:1: unknown top-level key 'a\\nb\\tc'");
  // A C1 control (U+009B is a one-byte CSI on some terminals) and a bidi override.
  CHECK(only_error("\"\\x9b2J\\u202e\": 1\n") == "test.yaml:1:1: unknown top-level key '\\u009b2J\\u202e'");
  // Values are quoted escaped too.
  CHECK(only_error("agent: {log_level: \"info\\r\"}\n") ==
        "test.yaml:1:20: agent.log_level: expected one of error, warn, info, debug, got 'info\\r'; did you "
        "mean 'info'?");
}

TEST_CASE("config: control access lists are numeric ids; control_group is a name or a gid") {
  const Parsed p = parse("agent: {control_group: hostlet, control_admin_uids: [1000, 0], control_read_gids: [115]}\n");
  CAPTURE(p.lines());
  REQUIRE(p.ok);
  CHECK(p.cfg.agent.control_group == "hostlet");
  CHECK(p.cfg.agent.control_admin_uids == std::vector<uint32_t>{1000, 0});
  CHECK(p.cfg.agent.control_read_gids == std::vector<uint32_t>{115});
  CHECK(p.cfg.agent.control_read_uids.empty());
  CHECK(only_error("agent: {control_read_uids: 1000}\n") ==
        "test.yaml:1:28: agent.control_read_uids: expected a list of numeric ids, e.g. [0, 1000], got '1000'");
  CHECK(only_error("agent: {control_admin_gids: [1, -1]}\n") ==
        "test.yaml:1:33: agent.control_admin_gids: must be between 0 and 4294967294, got -1");
}
