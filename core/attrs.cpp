#include "attrs.hpp"

namespace hostlet {

const std::string* find_attr(const Attrs& attrs, std::string_view key) {
  for (const auto& kv : attrs)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

std::vector<hostlet_attr> c_attrs(const Attrs& attrs) {
  std::vector<hostlet_attr> v;
  v.reserve(attrs.size());
  for (const auto& kv : attrs) v.push_back({kv.first.c_str(), kv.second.c_str()});
  return v;
}

bool copy_c_attrs(const hostlet_attr* attrs, size_t n, Attrs& out, bool nonempty_keys) {
  if (n && !attrs) return false;
  out.reserve(out.size() + n);
  for (size_t i = 0; i < n; i++) {
    if (!attrs[i].key || !attrs[i].value || (nonempty_keys && !*attrs[i].key)) return false;
    out.emplace_back(attrs[i].key, attrs[i].value);
  }
  return true;
}

CResult::CResult(const ActionResult& r) : attrs(c_attrs(r.attrs)) {
  result.ok = r.ok ? 1 : 0;
  result.error = r.ok ? nullptr : r.error.c_str();
  result.attrs = attrs.data();
  result.n_attrs = attrs.size();
  result.data_json = r.data_json.empty() ? nullptr : r.data_json.c_str();
}

}  // namespace hostlet
