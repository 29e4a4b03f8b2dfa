#include "template.hpp"

namespace hostlet::exec {
namespace {
bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-';
}
}  // namespace

std::string Template::parse(std::string_view text, Template& out) {
  out = Template();
  std::string literal;
  for (size_t i = 0; i < text.size(); i++) {
    const char c = text[i];
    if (text.compare(i, 3, "$${") == 0) {
      literal += "${";
      i += 2;
      continue;
    }
    if (c != '$' || i + 1 == text.size() || text[i + 1] != '{') {
      literal += c;
      continue;
    }
    const size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) return "unterminated '${' at offset " + std::to_string(i);
    const std::string_view name = text.substr(i + 2, close - i - 2);
    if (name.empty()) return "empty attribute name '${}' at offset " + std::to_string(i);
    for (char n : name)
      if (!name_char(n))
        return "attribute name '" + std::string(name) + "' at offset " + std::to_string(i) +
               " may hold only letters, digits, '_', '.' and '-'";
    if (!literal.empty()) out.parts_.push_back({false, std::move(literal)});
    literal.clear();
    out.parts_.push_back({true, std::string(name)});
    out.attr_names_.emplace_back(name);
    i = close;
  }
  if (!literal.empty() || out.parts_.empty()) out.parts_.push_back({false, std::move(literal)});
  return "";
}

bool Template::expand(const std::function<const char*(const std::string&)>& lookup, std::string* out,
                      std::string* missing) const {
  out->clear();
  for (const Part& p : parts_) {
    if (!p.attr) {
      *out += p.text;
      continue;
    }
    const char* v = lookup(p.text);
    if (!v) {
      *missing = p.text;
      return false;
    }
    *out += v;
  }
  return true;
}

bool Template::has_attrs() const { return !attr_names_.empty(); }

}  // namespace hostlet::exec
