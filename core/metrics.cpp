// The metrics writer (metrics.hpp).
#include "metrics.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>

#include "offload.hpp"  // Histogram
#include <hostlet/json_text.hpp>  // utf8_sequence_length

namespace hostlet {
namespace {

bool name_char(char c, bool first, bool colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':')) return true;
  return !first && c >= '0' && c <= '9';
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Escapes a label value (quote too) or help text (`quote` false in text
// format 0.0.4, whose HELP escapes only backslash and line feed).
void append_escaped(std::string& out, std::string_view v, bool quote) {
  for (size_t i = 0; i < v.size();) {
    char c = v[i];
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"' && quote) out += "\\\"";
    else if (static_cast<unsigned char>(c) >= 0x80) {
      size_t n = utf8_sequence_length(v.data() + i, v.data() + v.size());
      if (n == 0) {
        out += "\xEF\xBF\xBD";  // U+FFFD for a byte that is not UTF-8
        ++i;
        continue;
      }
      out.append(v.substr(i, n));
      i += n;
      continue;
    } else out += c;
    ++i;
  }
}

}  // namespace

MetricsWriter::MetricsWriter(hostlet_metrics_format format) : format_(format) {}

void MetricsWriter::set_owner(std::string_view owner) {
  owner_ = owner;
  refusal_.clear();
  refusals_ = 0;
  cur_ = nullptr;  // an owner's open family does not carry over to the next one
}

bool MetricsWriter::valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, true)) return false;
  return true;
}

bool MetricsWriter::valid_label_name(std::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__") return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, false)) return false;
  return true;
}

void MetricsWriter::append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[32];
  std::to_chars_result r;
  if (v == std::floor(v) && std::fabs(v) < 1e15) r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v));
  else r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

int MetricsWriter::refuse(int err, std::string why) {
  if (refusals_++ == 0) refusal_ = std::move(why);
  return err;
}

int MetricsWriter::family(std::string_view name, hostlet_metric_type type, std::string_view help,
                          std::string_view unit) {
  cur_ = nullptr;
  std::string quoted = "metric family '" + std::string(name) + "'";
  if (!valid_metric_name(name)) return refuse(-EINVAL, quoted + ": not a valid metric name");
  if (type != HOSTLET_METRIC_COUNTER && type != HOSTLET_METRIC_GAUGE && type != HOSTLET_METRIC_HISTOGRAM)
    return refuse(-EINVAL, quoted + ": unknown type " + std::to_string(static_cast<int>(type)));
  std::string_view base = name;
  if (type == HOSTLET_METRIC_COUNTER) {
    if (!ends_with(name, "_total") || name.size() == 6)
      return refuse(-EINVAL, quoted + ": a counter's name ends in _total");
    base = name.substr(0, name.size() - 6);
  }
  if (type == HOSTLET_METRIC_HISTOGRAM && (ends_with(name, "_bucket") || ends_with(name, "_count") ||
                                           ends_with(name, "_sum")))
    return refuse(-EINVAL, quoted + ": a histogram's name does not end in _bucket, _count or _sum");
  if (!unit.empty()) {
    if (!valid_label_name(unit) || !ends_with(base, "_" + std::string(unit)))
      return refuse(-EINVAL, quoted + ": unit '" + std::string(unit) + "' is not a suffix of the name");
  }
  // A family is known by its name and by its base (the name without a
  // counter's _total): text format names a counter by the one, OpenMetrics by
  // the other, so a gauge "x_total" and a counter "x_total", or a gauge "x"
  // and a counter "x_total", would collide in one of them.
  auto known = by_base_.find(std::string(name));
  if (known == by_base_.end()) known = by_base_.find(std::string(base));
  if (known != by_base_.end()) {
    // Another writer (a second instance of a plugin) or the same one again:
    // its samples join the family, which is written once, where it began.
    Family* f = known->second;
    if (f->type != type || f->name != name)
      return refuse(-EEXIST, quoted + ": already written in this scrape as another type or name");
    cur_ = f;
    return 0;
  }
  auto owned = std::make_unique<Family>();
  Family* f = owned.get();
  f->name = std::string(name);
  f->type = type;
  const bool om = format_ == HOSTLET_METRICS_OPENMETRICS;
  std::string_view shown = om ? base : name;
  std::string& out = f->text;
  if (!help.empty()) {
    out += "# HELP ";
    out.append(shown);
    out += ' ';
    append_escaped(out, help, om);
    out += '\n';
  }
  out += "# TYPE ";
  out.append(shown);
  out += type == HOSTLET_METRIC_COUNTER ? " counter\n" : type == HOSTLET_METRIC_GAUGE ? " gauge\n" : " histogram\n";
  if (om && !unit.empty()) {
    out += "# UNIT ";
    out.append(shown);
    out += ' ';
    out.append(unit);
    out += '\n';
  }
  by_base_.emplace(std::string(name), f);
  if (base != name) by_base_.emplace(std::string(base), f);
  families_.push_back(std::move(owned));
  cur_ = f;
  return 0;
}

bool MetricsWriter::append_labels(std::string& out, const hostlet_attr* labels, size_t n, std::string_view extra_name,
                                  std::string_view extra_value) {
  if (n == 0 && extra_name.empty()) return true;
  out += '{';
  for (size_t i = 0; i < n; ++i) {
    const char* k = labels[i].key;
    if (!k || !valid_label_name(k) || (!extra_name.empty() && extra_name == k)) return false;
    for (size_t j = 0; j < i; ++j)
      if (std::strcmp(labels[j].key, k) == 0) return false;
    if (i) out += ',';
    out += k;
    out += "=\"";
    append_escaped(out, labels[i].value ? labels[i].value : "", true);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (n) out += ',';
    out.append(extra_name);
    out += "=\"";
    out.append(extra_value);
    out += '"';
  }
  out += '}';
  return true;
}

// A 64-bit hash stands for the label set: no allocation per sample, and a
// false "written twice" needs a collision among one family's series.
bool MetricsWriter::new_series(std::string_view labels) {
  return cur_->series.insert(std::hash<std::string_view>{}(labels)).second;
}

int MetricsWriter::sample(const hostlet_attr* labels, size_t n_labels, double value) {
  if (!cur_) return refuse(-EINVAL, "metric sample without an open family");
  auto quoted = [&] { return "metric '" + cur_->name + "'"; };
  if (cur_->type == HOSTLET_METRIC_HISTOGRAM) return refuse(-EINVAL, quoted() + ": a histogram takes metric_histogram");
  if (n_labels && !labels) return refuse(-EINVAL, quoted() + ": labels NULL");
  if (cur_->type == HOSTLET_METRIC_COUNTER && !(value >= 0 && std::isfinite(value)))
    return refuse(-EINVAL, quoted() + ": a counter's value is a number >= 0");
  scratch_.clear();
  if (!append_labels(scratch_, labels, n_labels, {}, {}))
    return refuse(-EINVAL, quoted() + ": a label name is not valid or repeated");
  if (!new_series(scratch_)) return refuse(-EEXIST, quoted() + ": label set " + scratch_ + " written twice");
  std::string& out = cur_->text;
  out += cur_->name;
  out += scratch_;
  out += ' ';
  append_number(out, value);
  out += '\n';
  return 0;
}

int MetricsWriter::histogram(const hostlet_attr* labels, size_t n_labels, const double* upper_bounds,
                             const uint64_t* cumulative, size_t n_buckets, double sum, uint64_t count) {
  if (!cur_) return refuse(-EINVAL, "metric histogram without an open family");
  auto quoted = [&] { return "metric '" + cur_->name + "'"; };
  if (cur_->type != HOSTLET_METRIC_HISTOGRAM) return refuse(-EINVAL, quoted() + ": not a histogram family");
  if ((n_labels && !labels) || (n_buckets && (!upper_bounds || !cumulative)))
    return refuse(-EINVAL, quoted() + ": NULL labels or buckets");
  for (size_t i = 0; i < n_buckets; ++i) {
    if (!std::isfinite(upper_bounds[i]) || (i && !(upper_bounds[i] > upper_bounds[i - 1])))
      return refuse(-EINVAL, quoted() + ": bucket bounds are finite and increasing");
    if ((i && cumulative[i] < cumulative[i - 1]) || cumulative[i] > count)
      return refuse(-EINVAL, quoted() + ": bucket counts are cumulative and at most the count");
  }
  if (std::isnan(sum)) return refuse(-EINVAL, quoted() + ": sum is NaN");
  for (size_t i = 0; i < n_labels; ++i)
    if (labels[i].key && std::strcmp(labels[i].key, "le") == 0)
      return refuse(-EINVAL, quoted() + ": the label le is the host's, for the buckets");
  scratch_.clear();
  if (!append_labels(scratch_, labels, n_labels, {}, {}))
    return refuse(-EINVAL, quoted() + ": a label name is not valid or repeated");
  if (!new_series(scratch_)) return refuse(-EEXIST, quoted() + ": label set " + scratch_ + " written twice");
  std::string& out = cur_->text;
  const std::string& name = cur_->name;
  std::string le;
  auto bucket = [&](std::string_view bound, uint64_t c) {
    out += name;
    out += "_bucket";
    append_labels(out, labels, n_labels, "le", bound);
    out += ' ';
    append_number(out, static_cast<double>(c));
    out += '\n';
  };
  for (size_t i = 0; i < n_buckets; ++i) {
    le.clear();
    append_number(le, upper_bounds[i]);
    bucket(le, cumulative[i]);
  }
  bucket("+Inf", count);
  for (const char* part : {"_sum", "_count"}) {
    out += name;
    out += part;
    out += scratch_;
    out += ' ';
    append_number(out, part[1] == 's' ? sum : static_cast<double>(count));
    out += '\n';
  }
  return 0;
}

namespace {
// The core's labels as the C pairs the writer checks (NUL-terminated copies).
struct CLabels {
  static constexpr size_t kMax = 16;
  hostlet_attr a[kMax];
  std::string keep[2 * kMax];
  size_t n = 0;
  bool ok = true;
  explicit CLabels(MetricsWriter::Labels labels) {
    for (const auto& [k, v] : labels) {
      if (n == kMax) {
        ok = false;
        return;
      }
      keep[2 * n] = k;
      keep[2 * n + 1] = v;
      a[n] = {keep[2 * n].c_str(), keep[2 * n + 1].c_str()};
      ++n;
    }
  }
};
}  // namespace

int MetricsWriter::sample(Labels labels, double value) {
  CLabels c(labels);
  if (!c.ok) return refuse(-EINVAL, "a metric sample with more than 16 labels");
  return sample(c.a, c.n, value);
}

int MetricsWriter::histogram(Labels labels, const Histogram& h) {
  constexpr int kFirst = 10, kLast = 36;
  double bounds[kLast - kFirst + 1];
  uint64_t cum[kLast - kFirst + 1];
  uint64_t acc = 0;
  for (int i = 0; i < kFirst; ++i) acc += h.bucket(i);
  for (int i = kFirst; i <= kLast; ++i) {
    acc += h.bucket(i);
    bounds[i - kFirst] = static_cast<double>(1ull << (i + 1)) / 1e9;
    cum[i - kFirst] = acc;
  }
  CLabels c(labels);
  if (!c.ok) return refuse(-EINVAL, "a metric histogram with more than 16 labels");
  return histogram(c.a, c.n, bounds, cum, kLast - kFirst + 1, static_cast<double>(h.sum()) / 1e9, h.count());
}

std::string MetricsWriter::finish() {
  cur_ = nullptr;
  size_t total = 6;
  for (const auto& f : families_) total += f->text.size();
  std::string out;
  out.reserve(total);
  for (const auto& f : families_) out += f->text;
  if (format_ == HOSTLET_METRICS_OPENMETRICS) out += "# EOF\n";
  families_.clear();
  by_base_.clear();
  return out;
}

}  // namespace hostlet
