// Loading YAML text that may be hostile into a yaml-cpp node, with bounds:
// size, nesting depth, node count and CPU time. Every input either loads or
// fails with FILE:LINE:COLUMN, quickly, whoever wrote it.
//
// yaml-cpp 0.7 alone cannot promise that. Its LoadAll loops forever, pushing
// one null document per turn (2.4 GB in 30 s), when a document leaves its first
// token unconsumed: a ',' at the top level is enough (jbeder/yaml-cpp#1040;
// fixed after 0.7 by bc67157, PR #1319, "avoid possible infinite loop in
// LoadAll()", reworked by f25f110). It also accepts text that is not YAML
// (",", "\"a\" \"b\"", "- a\n,") as if it were, and it has no node limit.
// So the text is first read by libyaml's event parser (C, fuzzed upstream in
// OSS-Fuzz), which counts as it goes and stops at the first limit passed; only
// text libyaml accepts reaches yaml-cpp, and then through YAML::Load, which
// parses one document and never enters LoadAll's loop. A second document is
// found by libyaml and reported. libyaml's own slow path (its simple-key scan
// is quadratic in flow nesting: 100 000 '[' take 137 s) is cut off by the
// depth limit after a few thousand bytes.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstddef>
#include <string>

#include "config_error.hpp"

namespace hostlet {

struct YamlLimits {
  size_t max_bytes = 1 << 20;   // the whole text
  int max_depth = 64;           // sequences and mappings inside each other
  size_t max_nodes = 20000;     // scalars (keys too), sequences, mappings and aliases
  // CPU time of this thread for the check, so a loaded machine does not fail
  // a good file. A backstop: within the limits above the check takes under
  // 0.2 s at -O2. yaml-cpp then needs 5-15 µs per node and the config's own
  // checks about as much again, so 20 000 nodes (a config of 1300 rules)
  // stay well under a second, and a 1 MiB scalar takes ~0.4 s in all.
  std::chrono::milliseconds max_cpu{1000};
};

// Loads the first document of `text` into `out` (a null node for an empty
// text). Returns false, with one error added naming `file` and where possible
// the line and column, when the text is not YAML, passes a limit or does not
// load; `out` is then null. A second document is an error too, but the first
// one is still loaded (and true returned) so that it can be checked as well;
// when that load fails, both errors are reported (the second document's first).
bool load_yaml_document(const std::string& text, const std::string& file, YAML::Node& out,
                        ConfigErrors& errs, const YamlLimits& limits = {});

}  // namespace hostlet
