// What the fuzz targets share: how a broken promise ends the run, and a
// nlohmann SAX walker that tracks nesting (no DOM, no recursion, so a line
// nested 100 000 deep costs nothing to look at).
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace hostlet::fuzz {

// A broken promise: trap, which libFuzzer and replay_main report as a crash
// with the input that caused it.
inline void check(bool promise) {
  if (!promise) __builtin_trap();
}

// Every SAX event accepted; depth() is the number of arrays and objects
// open around the current event, max_depth() the deepest seen. Subclasses
// override on_key() and the container hooks.
class SaxWalker : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return enter(true); }
  bool end_object() override { return leave(true); }
  bool start_array(std::size_t) override { return enter(false); }
  bool end_array() override { return leave(false); }
  bool key(string_t& k) override {
    on_key(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

  size_t depth() const { return depth_; }
  size_t max_depth() const { return max_depth_; }

 protected:
  // After the container is opened (depth() counts it) / before it is closed.
  virtual void on_open(bool /*object*/) {}
  virtual void on_close(bool /*object*/) {}
  virtual void on_key(const std::string& /*key*/) {}

 private:
  bool enter(bool object) {
    if (++depth_ > max_depth_) max_depth_ = depth_;
    on_open(object);
    return true;
  }
  bool leave(bool object) {
    on_close(object);
    --depth_;
    return true;
  }
  size_t depth_ = 0, max_depth_ = 0;
};

}  // namespace hostlet::fuzz
