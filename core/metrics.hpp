// The metrics writer: one scrape's exposition, rendered as it is written, in
// Prometheus text format 0.0.4 or OpenMetrics 1.0.0. It is the ABI's
// hostlet_metrics (plugin.h: metric_family, metric_sample, metric_histogram)
// and what the core writes its own metrics with (agent_metrics.cpp).
//
// The host's rules, so that no exposition it serves is refused by a scraper:
// family and label names are validated, label values and help text escaped
// (invalid UTF-8 replaced), a family is written once per scrape, a label set
// once per family, a counter's name ends in "_total" (stripped in
// OpenMetrics' TYPE/HELP/UNIT lines) and its value is a finite number >= 0, a
// unit is a suffix of the name. A refused call returns a negative errno and
// writes nothing; the first refusal of each writer (owner) is kept for the
// caller to log.
#pragma once

#include <hostlet/plugin.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace hostlet {

class Histogram;

class MetricsWriter {
 public:
  explicit MetricsWriter(hostlet_metrics_format format);

  hostlet_metrics_format format() const { return format_; }

  // Who writes next (an instance name, "" for the core): refusals name it.
  void set_owner(std::string_view owner);

  int family(std::string_view name, hostlet_metric_type type, std::string_view help, std::string_view unit = {});
  int sample(const hostlet_attr* labels, size_t n_labels, double value);
  int histogram(const hostlet_attr* labels, size_t n_labels, const double* upper_bounds,
                const uint64_t* cumulative, size_t n_buckets, double sum, uint64_t count);

  // C++ conveniences for the core.
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;
  int sample(Labels labels, double value);
  // A log2-nanosecond Histogram (offload.hpp) as seconds, with fixed buckets
  // from 2^10 ns (about 1 us) to 2^36 ns (about 69 s).
  int histogram(Labels labels, const Histogram& h);

  // Ends the exposition ("# EOF" in OpenMetrics) and returns it.
  std::string finish();

  // The first refusal since set_owner ("" when none), e.g. "metric family 'x y': bad name".
  const std::string& first_refusal() const { return refusal_; }
  size_t refusals() const { return refusals_; }

  static bool valid_metric_name(std::string_view name);
  static bool valid_label_name(std::string_view name);
  // A double as the exposition formats write it: integers without a
  // fraction, NaN, +Inf, -Inf, else the shortest text that reads back equal.
  static void append_number(std::string& out, double v);

 private:
  int refuse(int err, std::string why);
  // Appends `{labels}` (with `extra` = le="..." last, when given) to out; false on a bad label.
  bool append_labels(std::string& out, const hostlet_attr* labels, size_t n, std::string_view extra_name,
                     std::string_view extra_value);
  bool new_series(std::string_view labels);

  hostlet_metrics_format format_;
  std::string out_;
  std::string owner_;
  // the open family
  bool open_ = false;
  hostlet_metric_type type_ = HOSTLET_METRIC_GAUGE;
  std::string name_;
  std::unordered_set<std::string> families_;
  std::unordered_set<std::string> series_;
  std::string scratch_;
  std::string refusal_;
  size_t refusals_ = 0;
};

}  // namespace hostlet

// The ABI's opaque writer is the MetricsWriter itself.
struct hostlet_metrics : hostlet::MetricsWriter {
  using hostlet::MetricsWriter::MetricsWriter;
};
