// argv and env templates: "${attr}" is replaced by the call's attribute, as
// one piece of one argument. Nothing is split, globbed or quoted: the value
// of an attribute never becomes more than the text it is.
//
//   ${name}   the attribute `name` ([A-Za-z0-9_.-]+); absent: the call fails
//   $${       a literal "${" (a shell's ${VAR} in `sh -c` code: $${VAR})
//   $         any other '$' is literal: "$(id)", "$$" and "$1" stay as written
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace hostlet::exec {

class Template {
 public:
  // Parses `text`; "" or what is wrong ("unterminated '${' at offset 3").
  static std::string parse(std::string_view text, Template& out);

  // The text with every attribute substituted; false with *missing set to the
  // first attribute that `lookup` (NULL: absent) does not have.
  bool expand(const std::function<const char*(const std::string&)>& lookup, std::string* out,
              std::string* missing) const;

  bool has_attrs() const;
  const std::vector<std::string>& attrs() const { return attr_names_; }

 private:
  struct Part {
    bool attr = false;
    std::string text;  // literal text, or the attribute's name
  };
  std::vector<Part> parts_;
  std::vector<std::string> attr_names_;
};

}  // namespace hostlet::exec
