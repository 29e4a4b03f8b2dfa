// Tests for core/config_schema.cpp: an instance's `config:` section checked
// against its plugin's hostlet_config_key table.
#include "config_schema.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "config_support.hpp"

using namespace hostlet;
using test::parse;
using test::Parsed;

namespace {

struct Validated {
  ConfigValues values;
  ConfigErrors errs;
  bool ok = false;
  std::vector<std::string> lines() const { return test::lines(errs); }
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
  CHECK(test::lines(errs) == std::vector<std::string>{
                     "f.yaml:7:5: plugin schema: bad default for key 'n': expected an integer, got 'ten'",
                     "f.yaml:7:5: plugin schema: bad default for key 'd': expected a duration such as "
                     "250ms, 5s, 2m or 1h, got '5 seconds'",
                     "f.yaml:7:5: plugin schema: bad default for key 'r': must be between 1 and 10, got 100",
                     "f.yaml:7:5: plugin schema: bad default for key 'l': not valid YAML: did not find "
                     "expected node content (while parsing a flow node)",
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
  CHECK(test::lines(errs) == std::vector<std::string>{
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

TEST_CASE("schema: a string value with a NUL is an error, since the plugin gets C strings") {
  const Validated v = validate(instance("{uri: \"unix:///a\\0/../b\", paths: [/ok, \"/x\\0\"]}"), kSchema);
  CHECK(v.lines() ==
        std::vector<std::string>{
            "test.yaml:4:19: config.uri: contains a NUL byte, which the plugin cannot receive (config "
            "strings reach it as C strings)",
            "test.yaml:4:52: config.paths[1]: contains a NUL byte, which the plugin cannot receive (config "
            "strings reach it as C strings)",
        });
  // Other control characters are the plugin's business (a separator may be a tab).
  const Validated tab = validate(instance("{uri: \"a\\tb\"}"), kSchema);
  CHECK(tab.ok);
  CHECK(tab.values.find("uri")->text == "a\tb");
}

TEST_CASE("schema: a mapping list reaches the plugin as JSON objects of strings, in the file's order") {
  const hostlet_config_key schema[] = {{"publish", HOSTLET_CONFIG_MAP_LIST, "[]", "", 0, 0, 0},
                                       {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0}};
  const Validated v = validate(instance("{publish: [{type: 'vm.*', source: notify, qos: 1}, {say: \"a\\\"b\"}]}"),
                               schema);
  CAPTURE(v.lines());
  REQUIRE(v.ok);
  CHECK(v.values.find("publish")->type == HOSTLET_CONFIG_MAP_LIST);
  CHECK(v.values.find("publish")->list ==
        std::vector<std::string>{R"({"type":"vm.*","source":"notify","qos":"1"})", R"({"say":"a\"b"})"});
  // One mapping is a list of one; the default applies when absent.
  const Validated one = validate(instance("{publish: {type: x}}"), schema);
  REQUIRE(one.ok);
  CHECK(one.values.find("publish")->list == std::vector<std::string>{R"({"type":"x"})"});
  const Validated none = validate(instance("{}"), schema);
  REQUIRE(none.ok);
  CHECK(none.values.find("publish")->list.empty());
}

TEST_CASE("schema: a mapping list refuses scalars, nested values and repeated keys where they are") {
  const hostlet_config_key schema[] = {{"publish", HOSTLET_CONFIG_MAP_LIST, "[]", "", 0, 0, 0},
                                       {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0}};
  CHECK(validate(instance("{publish: x}"), schema).lines() ==
        std::vector<std::string>{"test.yaml:4:23: config.publish: expected a mapping or a list of mappings, got 'x'"});
  CHECK(validate(instance("{publish: [{a: 1}, y]}"), schema).lines() ==
        std::vector<std::string>{"test.yaml:4:32: config.publish[1]: expected a mapping, got 'y'"});
  CHECK(validate(instance("{publish: [{a: [1]}]}"), schema).lines() ==
        std::vector<std::string>{"test.yaml:4:28: config.publish[0].a: expected a string, got a sequence"});
  CHECK(validate(instance("{publish: [{a: 1, a: 2}]}"), schema).lines() ==
        std::vector<std::string>{"test.yaml:4:31: config.publish[0]: key 'a' given twice"});
}

namespace {
const hostlet_config_key kMapSchema[] = {
    {"commands", HOSTLET_CONFIG_MAP, nullptr, "name -> command", 0, 0, HOSTLET_CONFIG_REQUIRED},
    {"commands.*.argv", HOSTLET_CONFIG_STRING_LIST, nullptr, "program and arguments", 0, 0, HOSTLET_CONFIG_REQUIRED},
    {"commands.*.timeout", HOSTLET_CONFIG_DURATION, "20s", "timeout", 0, 60000, 0},
    {"commands.*.env", HOSTLET_CONFIG_MAP, nullptr, "environment", 0, 0, 0},
    {"commands.*.env.*", HOSTLET_CONFIG_STRING, nullptr, "a variable", 0, 0, 0},
    {"limit", HOSTLET_CONFIG_INT, "4", "a top-level key beside the map", 1, 10, 0},
    {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0},
};
}  // namespace

TEST_CASE("schema: a map of mappings is read under concrete dotted names, in document order") {
  const Validated v = validate(
      "plugins:\n  - name: i\n    plugin: p\n    config:\n      commands:\n"
      "        zeta: {argv: [/bin/true], env: {A: x, B: \"${b}\"}}\n"
      "        alpha: {argv: [/bin/false, -v], timeout: 5s}\n",
      kMapSchema);
  CAPTURE(v.lines());
  REQUIRE(v.ok);
  const ConfigValues& c = v.values;
  REQUIRE(c.find("commands"));
  CHECK(c.find("commands")->type == HOSTLET_CONFIG_MAP);
  CHECK(c.find("commands")->list == std::vector<std::string>{"zeta", "alpha"});
  CHECK(c.find("commands.zeta.argv")->list == std::vector<std::string>{"/bin/true"});
  CHECK(c.find("commands.alpha.argv")->list == std::vector<std::string>{"/bin/false", "-v"});
  CHECK(c.find("commands.alpha.timeout")->i == 5000);
  CHECK(c.find("commands.zeta.timeout")->i == 20000);  // the default, per entry
  CHECK(c.find("commands.zeta.env")->list == std::vector<std::string>{"A", "B"});
  CHECK(c.find("commands.zeta.env.B")->text == "${b}");
  CHECK(c.find("commands.alpha.env") == nullptr);  // absent map
  CHECK(c.declared_type("commands.alpha.env") == HOSTLET_CONFIG_MAP);
  CHECK(c.find("limit")->i == 4);
}

TEST_CASE("schema: errors inside a map name the entry, with line and column and a suggestion") {
  const Validated v = validate(
      "plugins:\n  - name: i\n    plugin: p\n    config:\n      commands:\n"
      "        a: {argz: [/bin/true]}\n"
      "        b: {argv: [/bin/true], timeout: 2m, env: [x]}\n"
      "        c.d: {argv: [x]}\n"
      "        e: [1]\n",
      kMapSchema);
  CHECK_FALSE(v.ok);
  CHECK(v.lines() == std::vector<std::string>{
                         "test.yaml:6:9: config.commands.a: missing required key 'argv' (program and arguments)",
                         "test.yaml:6:13: config.commands.a: unknown key 'argz'; did you mean 'argv'?",
                         "test.yaml:7:41: config.commands.b.timeout: must be between 0ms and 1m, got 2m",
                         "test.yaml:7:50: config.commands.b.env: expected a mapping, got a sequence",
                         "test.yaml:8:9: config.commands: the name 'c.d' must not contain '.'",
                         "test.yaml:9:12: config.commands.e: expected a mapping, got a sequence",
                     });
  const Validated missing = validate(instance("{limit: 2}"), kMapSchema);
  CHECK(missing.lines() ==
        std::vector<std::string>{"test.yaml:2:5: config: missing required key 'commands' (name -> command)"});
}

TEST_CASE("schema: names below a MAP key must alternate with '*' under a MAP key") {
  const hostlet_config_key bad[] = {
      {"env", HOSTLET_CONFIG_STRING, nullptr, "not a map", 0, 0, 0},
      {"env.*", HOSTLET_CONFIG_STRING, nullptr, "", 0, 0, 0},
      {"m", HOSTLET_CONFIG_MAP, nullptr, "", 0, 0, 0},
      {"m.x", HOSTLET_CONFIG_STRING, nullptr, "", 0, 0, 0},
      {nullptr, HOSTLET_CONFIG_STRING, nullptr, nullptr, 0, 0, 0},
  };
  const Validated v = validate(instance("{}"), bad);
  CHECK_FALSE(v.ok);
  CHECK(v.lines() == std::vector<std::string>{
                         "test.yaml:2:5: plugin schema: key 'env.*' has '*' after 'env', which is not a MAP key",
                         "test.yaml:2:5: plugin schema: key 'm.x' must alternate names and '*' (e.g. \"commands.*.argv\")",
                     });
}
