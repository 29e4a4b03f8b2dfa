// String attributes, as events and actions carry them, and an action's answer;
// the one place where they are converted to and from the C ABI's arrays.
#pragma once

#include <hostlet/plugin.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hostlet {

using Attrs = std::vector<std::pair<std::string, std::string>>;

// The value of `key`, or null.
const std::string* find_attr(const Attrs& attrs, std::string_view key);

// A view of `attrs` as the C ABI's array; valid while `attrs` is unchanged.
std::vector<hostlet_attr> c_attrs(const Attrs& attrs);

// Copies a C array; false when an entry has a null key or value (or, with
// `nonempty_keys`, an empty key): the caller answers -EINVAL.
bool copy_c_attrs(const hostlet_attr* attrs, size_t n, Attrs& out, bool nonempty_keys = false);

struct ActionResult {
  bool ok = false;
  std::string error;
  Attrs attrs;
  std::string data_json;  // empty: no data
  // When !ok and the core itself answered: what kind of failure, as a
  // negative errno (-EAGAIN: the instance's lane was full and the call did
  // not start); 0 otherwise.
  int code = 0;
  static ActionResult failure(std::string msg, int code = 0) {
    ActionResult r;
    r.error = std::move(msg);
    r.code = code;
    return r;
  }
};

// An ActionResult seen through the C ABI (hostlet_result), valid while the
// ActionResult is unchanged.
struct CResult {
  explicit CResult(const ActionResult& r);
  CResult(const CResult&) = delete;  // `result` points into `attrs`
  CResult& operator=(const CResult&) = delete;
  std::vector<hostlet_attr> attrs;
  hostlet_result result{};
};

}  // namespace hostlet
