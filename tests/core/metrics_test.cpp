// The metrics writer (core/metrics.hpp): both formats, the host's naming
// and escaping rules, refusals that write nothing.
#include <catch2/catch.hpp>

#include <cerrno>
#include <cmath>
#include <string>

#include "metrics.hpp"
#include "offload.hpp"

using hostlet::MetricsWriter;

namespace {

std::string number(double v) {
  std::string s;
  MetricsWriter::append_number(s, v);
  return s;
}

}  // namespace

TEST_CASE("a counter and a gauge in text format 0.0.4") {
  MetricsWriter w(HOSTLET_METRICS_TEXT);
  REQUIRE(w.family("x_reads_total", HOSTLET_METRIC_COUNTER, "Reads done.") == 0);
  hostlet_attr l[] = {{"dev", "sda"}};
  REQUIRE(w.sample(l, 1, 12) == 0);
  REQUIRE(w.family("x_items", HOSTLET_METRIC_GAUGE, "") == 0);
  REQUIRE(w.sample(nullptr, 0, 2.5) == 0);
  CHECK(w.finish() ==
        "# HELP x_reads_total Reads done.\n"
        "# TYPE x_reads_total counter\n"
        "x_reads_total{dev=\"sda\"} 12\n"
        "# TYPE x_items gauge\n"
        "x_items 2.5\n");
}

TEST_CASE("OpenMetrics: the counter's family drops _total, a unit line, # EOF") {
  MetricsWriter w(HOSTLET_METRICS_OPENMETRICS);
  REQUIRE(w.family("x_read_bytes_total", HOSTLET_METRIC_COUNTER, "Bytes \"read\".", "bytes") == 0);
  REQUIRE(w.sample(nullptr, 0, 7) == 0);
  CHECK(w.finish() ==
        "# HELP x_read_bytes Bytes \\\"read\\\".\n"
        "# TYPE x_read_bytes counter\n"
        "# UNIT x_read_bytes bytes\n"
        "x_read_bytes_total 7\n"
        "# EOF\n");
}

TEST_CASE("label values and help are escaped; invalid UTF-8 becomes U+FFFD") {
  MetricsWriter w(HOSTLET_METRICS_TEXT);
  REQUIRE(w.family("x", HOSTLET_METRIC_GAUGE, "a\\b\nc \"q\"") == 0);
  hostlet_attr l[] = {{"v", "q\"b\\n\nz\xff\xc3\xa9"}};
  REQUIRE(w.sample(l, 1, 1) == 0);
  std::string out = w.finish();
  CHECK(out.find("# HELP x a\\\\b\\nc \"q\"\n") != std::string::npos);  // 0.0.4 HELP: quotes stay
  CHECK(out.find("x{v=\"q\\\"b\\\\n\\nz\xEF\xBF\xBD\xc3\xa9\"} 1\n") != std::string::npos);
}

TEST_CASE("bad names, types and units are refused and write nothing") {
  MetricsWriter w(HOSTLET_METRICS_TEXT);
  w.set_owner("p");
  CHECK(w.family("9x", HOSTLET_METRIC_GAUGE, "") == -EINVAL);
  CHECK(w.first_refusal() == "metric family '9x': not a valid metric name");
  CHECK(w.family("a b", HOSTLET_METRIC_GAUGE, "") == -EINVAL);
  CHECK(w.family("", HOSTLET_METRIC_GAUGE, "") == -EINVAL);
  CHECK(w.family("x_reads", HOSTLET_METRIC_COUNTER, "") == -EINVAL);  // no _total
  CHECK(w.family("_total", HOSTLET_METRIC_COUNTER, "") == -EINVAL);
  CHECK(w.family("x", static_cast<hostlet_metric_type>(9), "") == -EINVAL);
  CHECK(w.family("x_seconds", HOSTLET_METRIC_GAUGE, "", "bytes") == -EINVAL);
  CHECK(w.family("h_bucket", HOSTLET_METRIC_HISTOGRAM, "") == -EINVAL);
  CHECK(w.sample(nullptr, 0, 1) == -EINVAL);  // no open family
  CHECK(w.refusals() == 9);
  CHECK(w.finish().empty());
}

TEST_CASE("bad labels, duplicates and counter values are refused") {
  MetricsWriter w(HOSTLET_METRICS_TEXT);
  REQUIRE(w.family("x_total", HOSTLET_METRIC_COUNTER, "") == 0);
  hostlet_attr bad[] = {{"__name", "v"}};
  CHECK(w.sample(bad, 1, 1) == -EINVAL);
  hostlet_attr digit[] = {{"1a", "v"}};
  CHECK(w.sample(digit, 1, 1) == -EINVAL);
  hostlet_attr twice[] = {{"a", "1"}, {"a", "2"}};
  CHECK(w.sample(twice, 2, 1) == -EINVAL);
  hostlet_attr ok[] = {{"a", "1"}};
  CHECK(w.sample(ok, 1, -1) == -EINVAL);
  CHECK(w.sample(ok, 1, NAN) == -EINVAL);
  CHECK(w.sample(ok, 1, 3) == 0);
  CHECK(w.sample(ok, 1, 4) == -EEXIST);  // same series twice
  CHECK(w.family("x_total", HOSTLET_METRIC_COUNTER, "") == -EEXIST);
  CHECK(w.sample(ok, 1, 5) == -EINVAL);  // the refused family is not open
  CHECK(w.finish() == "# TYPE x_total counter\nx_total{a=\"1\"} 3\n");
}

TEST_CASE("a family is once per scrape across owners; an owner's open family ends with it") {
  MetricsWriter w(HOSTLET_METRICS_TEXT);
  w.set_owner("a");
  REQUIRE(w.family("shared", HOSTLET_METRIC_GAUGE, "") == 0);
  w.set_owner("b");
  CHECK(w.sample(nullptr, 0, 1) == -EINVAL);
  CHECK(w.first_refusal() == "metric sample without an open family");
  w.set_owner("c");
  CHECK(w.family("shared", HOSTLET_METRIC_GAUGE, "") == -EEXIST);
  CHECK(w.first_refusal().find("written twice") != std::string::npos);
}

TEST_CASE("histograms: cumulative buckets, +Inf, sum and count") {
  MetricsWriter w(HOSTLET_METRICS_OPENMETRICS);
  REQUIRE(w.family("lat_seconds", HOSTLET_METRIC_HISTOGRAM, "Latency.", "seconds") == 0);
  double b[] = {0.1, 1};
  uint64_t c[] = {2, 5};
  hostlet_attr l[] = {{"lane", "a"}};
  CHECK(w.sample(l, 1, 1) == -EINVAL);  // a histogram takes metric_histogram
  REQUIRE(w.histogram(l, 1, b, c, 2, 3.5, 6) == 0);
  uint64_t down[] = {5, 2};
  hostlet_attr l2[] = {{"lane", "b"}};
  CHECK(w.histogram(l2, 1, b, down, 2, 1, 6) == -EINVAL);
  double unordered[] = {1, 0.1};
  CHECK(w.histogram(l2, 1, unordered, c, 2, 1, 6) == -EINVAL);
  hostlet_attr le[] = {{"le", "x"}};
  CHECK(w.histogram(le, 1, b, c, 2, 1, 6) == -EINVAL);  // le is the host's
  CHECK(w.finish() ==
        "# HELP lat_seconds Latency.\n"
        "# TYPE lat_seconds histogram\n"
        "# UNIT lat_seconds seconds\n"
        "lat_seconds_bucket{lane=\"a\",le=\"0.1\"} 2\n"
        "lat_seconds_bucket{lane=\"a\",le=\"1\"} 5\n"
        "lat_seconds_bucket{lane=\"a\",le=\"+Inf\"} 6\n"
        "lat_seconds_sum{lane=\"a\"} 3.5\n"
        "lat_seconds_count{lane=\"a\"} 6\n"
        "# EOF\n");
}

TEST_CASE("a core Histogram becomes fixed buckets in seconds") {
  hostlet::Histogram h;
  h.record(1500);           // bucket 10: le 2^11 ns
  h.record(3'000'000'000);  // about 3 s
  MetricsWriter w(HOSTLET_METRICS_TEXT);
  REQUIRE(w.family("h_seconds", HOSTLET_METRIC_HISTOGRAM, "") == 0);
  REQUIRE(w.histogram({}, h) == 0);
  std::string out = w.finish();
  CHECK(out.find("h_seconds_bucket{le=\"2.048e-06\"} 1\n") != std::string::npos);
  CHECK(out.find("h_seconds_bucket{le=\"2.147483648\"} 1\n") != std::string::npos);
  CHECK(out.find("h_seconds_bucket{le=\"4.294967296\"} 2\n") != std::string::npos);
  CHECK(out.find("h_seconds_bucket{le=\"+Inf\"} 2\n") != std::string::npos);
  CHECK(out.find("h_seconds_count 2\n") != std::string::npos);
}

TEST_CASE("numbers: integers without a fraction, special values, round trip") {
  CHECK(number(0) == "0");
  CHECK(number(-3) == "-3");
  CHECK(number(1e15) == "1e+15");
  CHECK(number(0.1) == "0.1");
  CHECK(number(NAN) == "NaN");
  CHECK(number(INFINITY) == "+Inf");
  CHECK(number(-INFINITY) == "-Inf");
  CHECK(std::stod(number(1.0 / 3)) == 1.0 / 3);
}
