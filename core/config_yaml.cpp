// See config_yaml.hpp for why there are two parsers.
#include "config_yaml.hpp"

#include <yaml.h>

#include <ctime>
#include <string_view>

#include "config_scalars.hpp"

namespace hostlet {

namespace {

Mark mark_from(const yaml_mark_t& m) {
  return {static_cast<int>(m.line) + 1, static_cast<int>(m.column) + 1};
}

// A reader error (bad UTF-8, a control character) has a byte offset and no mark.
Mark mark_at_offset(std::string_view text, size_t offset) {
  if (offset > text.size()) offset = text.size();
  Mark m{1, 1};
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++m.line;
      m.column = 1;
    } else {
      ++m.column;
    }
  }
  return m;
}

std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

std::string hex(unsigned v) {
  static const char kDigits[] = "0123456789ABCDEF";
  std::string s;
  do {
    s.insert(s.begin(), kDigits[v & 15]);
    v >>= 4;
  } while (v != 0);
  return s.size() < 2 ? "0" + s : s;
}

class EventParser {
 public:
  explicit EventParser(std::string_view text) : text_(text) {
    ready_ = yaml_parser_initialize(&parser_) == 1;
    if (ready_)
      yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  }
  ~EventParser() {
    if (ready_) yaml_parser_delete(&parser_);
  }
  EventParser(const EventParser&) = delete;
  EventParser& operator=(const EventParser&) = delete;

  bool ready() const { return ready_; }
  // The next event's type and start mark; false on a syntax error (see error()).
  bool next(yaml_event_type_t& type, Mark& at) {
    yaml_event_t e;
    if (yaml_parser_parse(&parser_, &e) != 1) return false;
    type = e.type;
    at = mark_from(e.start_mark);
    yaml_event_delete(&e);
    return true;
  }

  // The byte that starts character `column` of line `line` (libyaml's
  // 0-based mark, which counts characters, not bytes), or '\0'.
  char char_at(size_t line, size_t column) const {
    size_t i = 0;
    for (size_t l = 0; l < line; ++l) {
      i = text_.find('\n', i);
      if (i == std::string_view::npos) return '\0';
      ++i;
    }
    for (size_t c = 0; c < column && i < text_.size(); ++c) {
      ++i;
      while (i < text_.size() && (static_cast<unsigned char>(text_[i]) & 0xC0) == 0x80) ++i;  // continuation bytes
    }
    return i < text_.size() ? text_[i] : '\0';
  }

  // libyaml's problem in plain words where a common mistake is behind it: a
  // TAB, a line indented to no key's column, an unclosed '[', '{' or quote,
  // a ': ' inside a plain value. "" for anything else, which keeps libyaml's
  // words and context.
  static std::string plain_words(std::string_view problem, std::string_view context, const Mark& c, char at_char) {
    const std::string where = "line " + std::to_string(c.line) + ", column " + std::to_string(c.column);
    if (problem == "found character that cannot start any token" && at_char == '\t')
      return "a TAB character: YAML indents with spaces only";
    if (problem == "did not find expected key" && context == "while parsing a block mapping")
      return "this line is indented to no key's column (the mapping that starts at " + where +
             " has its keys in column " + std::to_string(c.column) + "; indent further to nest under a key)";
    if (problem == "did not find expected ',' or ']'" && context == "while parsing a flow sequence")
      return "the list '[' opened at " + where + " is not closed (expected ',' or ']' here)";
    if (problem == "did not find expected ',' or '}'" && context == "while parsing a flow mapping")
      return "the mapping '{' opened at " + where + " is not closed (expected ',' or '}' here)";
    if (problem == "found unexpected end of stream" && context == "while scanning a quoted scalar")
      return "the quoted string that starts at " + where + " is not closed";
    if (problem == "mapping values are not allowed in this context")
      return "': ' inside a plain value (quote the value, or put a nested mapping on the next lines, indented)";
    return {};
  }

  ConfigError error(const std::string& file) const {
    const yaml_parser_t& p = parser_;
    std::string msg = p.problem ? p.problem : "not valid YAML";
    if (p.error == YAML_MEMORY_ERROR) return {file, {}, "out of memory while reading YAML"};
    if (p.error == YAML_READER_ERROR) {
      if (p.problem_value != -1) msg += " (0x" + hex(static_cast<unsigned>(p.problem_value)) + ")";
      return {file, mark_at_offset(text_, p.problem_offset), msg};
    }
    const Mark at = mark_from(p.problem_mark);
    const char at_char = char_at(p.problem_mark.line, p.problem_mark.column);
    if (std::string plain = plain_words(msg, p.context ? p.context : "", mark_from(p.context_mark), at_char);
        !plain.empty())
      return {file, at, plain};
    if (p.context) {
      const Mark c = mark_from(p.context_mark);
      msg += std::string(" (") + p.context;
      if (c.line != at.line || c.column != at.column)
        msg += " that starts at line " + std::to_string(c.line) + ", column " + std::to_string(c.column);
      msg += ")";
    }
    return {file, at, msg};
  }

 private:
  std::string_view text_;
  yaml_parser_t parser_{};
  bool ready_ = false;
};

// Reads the whole first document with libyaml and counts. Returns false with
// an error when the text is not YAML or passes a limit; adds an error (and
// returns true) when a second document follows.
bool check_with_libyaml(const std::string& text, const std::string& file, const YamlLimits& limits,
                        ConfigErrors& errs) {
  EventParser parser(text);
  if (!parser.ready()) {
    errs.push_back({file, {}, "out of memory while reading YAML"});
    return false;
  }
  const std::chrono::nanoseconds deadline = thread_cpu_time() + limits.max_cpu;
  int depth = 0;
  size_t nodes = 0;
  int documents = 0;
  for (size_t n = 0;; ++n) {
    yaml_event_type_t type;
    Mark at;
    if (!parser.next(type, at)) {
      errs.push_back(parser.error(file));
      return false;
    }
    // libyaml's cost per event is bounded once depth is; the clock is a backstop.
    if (n % 64 == 0 && thread_cpu_time() > deadline) {
      errs.push_back({file, at,
                      "reading the YAML took more than " + format_ms(static_cast<uint64_t>(limits.max_cpu.count())) +
                          " of CPU time; stopped here"});
      return false;
    }
    switch (type) {
      case YAML_STREAM_END_EVENT: return true;
      case YAML_DOCUMENT_START_EVENT:
        if (++documents == 2) {
          // Where the user sees the second document: its first node.
          yaml_event_type_t first;
          Mark node_at = at;
          if (parser.next(first, node_at) && first == YAML_DOCUMENT_END_EVENT) node_at = at;
          errs.push_back({file, node_at, "expected one YAML document, found another"});
          return true;
        }
        break;
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT:
        if (++depth > limits.max_depth) {
          errs.push_back({file, at,
                          "nested more than " + std::to_string(limits.max_depth) +
                              " sequences and mappings deep (the limit for a config file)"});
          return false;
        }
        [[fallthrough]];
      case YAML_SCALAR_EVENT:
      case YAML_ALIAS_EVENT:
        if (++nodes > limits.max_nodes) {
          errs.push_back({file, at,
                          "more than " + std::to_string(limits.max_nodes) +
                              " values, sequences and mappings (the limit for a config file)"});
          return false;
        }
        break;
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT: --depth; break;
      default: break;
    }
  }
}

}  // namespace

bool load_yaml_document(const std::string& text, const std::string& file, YAML::Node& out,
                        ConfigErrors& errs, const YamlLimits& limits) {
  out = YAML::Node();
  if (text.size() > limits.max_bytes) {
    errs.push_back({file, {}, "more than " + format_size(limits.max_bytes) +
                                  " of text (the limit for a config file)"});
    return false;
  }
  if (!check_with_libyaml(text, file, limits, errs)) return false;
  try {
    out = YAML::Load(text);  // the first document only: never LoadAll (see the header)
  } catch (const YAML::Exception& e) {
    const Mark m = e.mark.is_null() ? Mark{} : Mark{e.mark.line + 1, e.mark.column + 1};
    errs.push_back({file, m, e.msg});
    out = YAML::Node();
    return false;
  }
  return true;
}

}  // namespace hostlet
