// RecentHistograms (core/recent.hpp): percentiles over the last minute from
// cumulative histograms copied every 10 s, driven here with explicit times,
// and its timer on a real loop.
#include <catch2/catch.hpp>
#include <uv.h>

#include <string>

#include "recent.hpp"

using hostlet::Histogram;
using hostlet::RecentHistograms;

namespace {
constexpr uint64_t kS = 1'000'000'000ull;
}

TEST_CASE("recent: the window reaches back 50 to 60 s once a minute has passed") {
  RecentHistograms r;
  Histogram h;
  auto show = [&h](const auto& add) { add("lane", h); };
  // Second 0..120: one copy every 10 s; 1 ms samples before t=60, 1 us after.
  for (uint64_t t = 0; t <= 120; t += 10) {
    if (t > 0)
      for (int i = 0; i < 100; ++i) h.record(t <= 60 ? 1'000'000 : 1'000);
    r.sample(t * kS, show);
  }
  // At 125 s: the oldest copy at most 60 s old is the one of 70 s.
  RecentHistograms::Recent got = r.recent("lane", h, 125 * kS);
  CHECK(got.span_ns == 55 * kS);
  CHECK(got.h.count() == 500);  // recorded at 80..120
  CHECK(got.h.quantile(0.99) == 1023);
  CHECK(h.quantile(0.99) == 1'000'000);  // since start still holds the slow half
  // At 130 s the copy of 70 s is 60 s old: still in.
  CHECK(r.recent("lane", h, 130 * kS).span_ns == 60 * kS);
}

TEST_CASE("recent: before a minute the window is everything since the first copy") {
  RecentHistograms r;
  Histogram h;
  r.sample(5 * kS, [&h](const auto& add) { add("loop", h); });
  h.record(42);
  RecentHistograms::Recent got = r.recent("loop", h, 35 * kS);
  CHECK(got.span_ns == 30 * kS);
  CHECK(got.h.count() == 1);
  CHECK(got.h.max() == 42);
}

TEST_CASE("recent: a key never copied, or whose histogram went back, shows all of it with span 0") {
  RecentHistograms r;
  Histogram h;
  h.record(7);
  RecentHistograms::Recent got = r.recent("nobody", h, 1 * kS);
  CHECK(got.span_ns == 0);
  CHECK(got.h.count() == 1);
  r.sample(0, [&h](const auto& add) { add("lane", h); });
  Histogram fresh;  // the same key, another histogram (reset, or replaced)
  fresh.record(3);
  got = r.recent("lane", fresh, 10 * kS);
  CHECK(got.span_ns == 0);
  CHECK(got.h.count() == 1);
  CHECK(got.h.max() == 3);
}

TEST_CASE("recent: a key the sampler no longer shows is forgotten") {
  RecentHistograms r;
  Histogram a, b;
  a.record(1);
  b.record(1);
  r.sample(0, [&](const auto& add) {
    add("wait:old#1", a);
    add("wait:new#2", b);
  });
  r.sample(10 * kS, [&](const auto& add) { add("wait:new#2", b); });
  CHECK(r.recent("wait:old#1", a, 20 * kS).span_ns == 0);
  CHECK(r.recent("wait:new#2", b, 20 * kS).span_ns == 20 * kS);
}

TEST_CASE("recent: the timer copies at start, does not keep the loop alive, and closes") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  Histogram h;
  h.record(5);
  int shown = 0;
  {
    RecentHistograms r;
    r.start(&loop, [&](const auto& add) {
      ++shown;
      add("loop", h);
    });
    CHECK(shown == 1);
    h.record(9);
    RecentHistograms::Recent got = r.recent("loop", h, uv_hrtime());
    CHECK(got.h.count() == 1);  // only what came after the first copy
    CHECK(got.h.max() == 9);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);  // unref'd: returns at once
    r.close();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  CHECK(uv_loop_close(&loop) == 0);
}
