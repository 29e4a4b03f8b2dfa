// Tests for core/config_scalars.cpp: what a scalar's text means.
#include "config_scalars.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>

using namespace hostlet;

TEST_CASE("scalars: parse_int takes decimal with one optional sign and nothing else") {
  CHECK(parse_int("0") == 0);
  CHECK(parse_int("42") == 42);
  CHECK(parse_int("+42") == 42);
  CHECK(parse_int("-7") == -7);
  CHECK(parse_int("007") == 7);
  CHECK(parse_int("9223372036854775807") == std::numeric_limits<int64_t>::max());
  CHECK(parse_int("-9223372036854775808") == std::numeric_limits<int64_t>::min());
  for (const char* bad : {"", "+", "-", "++1", "+-1", "+-0", " 1", "1 ", "1.0", "0x10", "1e3", "9223372036854775808",
                          "-9223372036854775809", "one"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_int(bad).has_value());
  }
}

TEST_CASE("scalars: parse_double takes finite decimal numbers") {
  CHECK(parse_double("1.5") == Approx(1.5));
  CHECK(parse_double("+2") == Approx(2));
  CHECK(parse_double("-0.25") == Approx(-0.25));
  CHECK(parse_double("1e3") == Approx(1000));
  for (const char* bad : {"", "+", "++1", "+-1.5", "1.5x", " 1", "inf", "-inf", "nan", "1e999", "half"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_double(bad).has_value());
  }
}

TEST_CASE("scalars: parse_bool takes YAML 1.1 booleans in lower, UPPER or Capitalized case") {
  for (const char* yes : {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"}) {
    CAPTURE(yes);
    CHECK(parse_bool(yes) == true);
  }
  for (const char* no : {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N"}) {
    CAPTURE(no);
    CHECK(parse_bool(no) == false);
  }
  for (const char* bad : {"", "1", "0", "tRUE", "TRue", "truee", "t", "yess", "of", " true", "true "}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_bool(bad).has_value());
  }
}

TEST_CASE("scalars: parse_duration_ms accepts ms, s, m, h, fractions and plain ms") {
  CHECK(parse_duration_ms("0") == 0u);
  CHECK(parse_duration_ms("250") == 250u);
  CHECK(parse_duration_ms("250ms") == 250u);
  CHECK(parse_duration_ms("5s") == 5000u);
  CHECK(parse_duration_ms("2m") == 120000u);
  CHECK(parse_duration_ms("1h") == 3600000u);
  CHECK(parse_duration_ms("1.5s") == 1500u);
  CHECK(parse_duration_ms("0.25s") == 250u);
  CHECK(parse_duration_ms("1.500s") == 1500u);
  CHECK(parse_duration_ms("0.5m") == 30000u);
  CHECK(parse_duration_ms("007s") == 7000u);
  CHECK(parse_duration_ms("9223372036854775807") == 9223372036854775807u);
}

TEST_CASE("scalars: parse_duration_ms rejects negatives, overflow, fractions of a ms and garbage") {
  for (const char* bad : {"", "-1", "-1s", "+5s", "5x", "5 s", " 5s", "5s ", "s", "ms", "1.5", "0.5ms",
                          "1.0001s", "1.s", ".5s", "1e3", "5S", "5sec", "1h30m",
                          "9223372036854775808", "18446744073709551616", "2562047788015216h",
                          "0.0000000000000000001s", "0x10"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_duration_ms(bad).has_value());
  }
}

TEST_CASE("scalars: parse_size accepts bytes and K, M, G, T with or without iB") {
  CHECK(parse_size("0") == 0u);
  CHECK(parse_size("512") == 512u);
  CHECK(parse_size("512B") == 512u);
  CHECK(parse_size("64K") == 65536u);
  CHECK(parse_size("64KiB") == 65536u);
  CHECK(parse_size("1M") == 1048576u);
  CHECK(parse_size("1MiB") == 1048576u);
  CHECK(parse_size("2G") == 2147483648u);
  CHECK(parse_size("2GiB") == 2147483648u);
  CHECK(parse_size("1TiB") == 1099511627776u);
  CHECK(parse_size("1.5KiB") == 1536u);
  CHECK(parse_size("0.5M") == 524288u);
}

TEST_CASE("scalars: parse_size rejects negatives, overflow, partial bytes and garbage") {
  for (const char* bad : {"", "-1", "-1K", "1KB", "1kb", "1k", "1 K", "K", "1.5", "1.1K", "1Ki",
                          "1e3", "9223372036854775808", "8388608T", "99999999999999999999",
                          "1KiBB", "0x100"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_size(bad).has_value());
  }
}

TEST_CASE("scalars: parse_rate_per_second reads per second, /s, /m and /h") {
  CHECK(parse_rate_per_second("10") == Approx(10));
  CHECK(parse_rate_per_second("0.5") == Approx(0.5));
  CHECK(parse_rate_per_second("10/s") == Approx(10));
  CHECK(parse_rate_per_second("30/m") == Approx(0.5));
  CHECK(parse_rate_per_second("36/h") == Approx(0.01));
  CHECK(parse_rate_per_second("-1") == Approx(-1));  // the caller rejects rates <= 0
  for (const char* bad : {"", "/s", "10/d", "10/", "10 /s", "ten/s", "10/ss", "inf"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_rate_per_second(bad).has_value());
  }
}

TEST_CASE("scalars: format_ms and format_size pick the largest exact unit") {
  CHECK(format_ms(0) == "0ms");
  CHECK(format_ms(1500) == "1500ms");
  CHECK(format_ms(5000) == "5s");
  CHECK(format_ms(120000) == "2m");
  CHECK(format_ms(7200000) == "2h");
  CHECK(format_size(0) == "0");
  CHECK(format_size(1536) == "1536");
  CHECK(format_size(65536) == "64KiB");
  CHECK(format_size(1 << 20) == "1MiB");
  CHECK(format_size(3ull << 30) == "3GiB");
}

TEST_CASE("scalars: parse_file_mode reads octal with a leading 0 or 0o, decimal otherwise") {
  CHECK(parse_file_mode("0600") == 0600u);
  CHECK(parse_file_mode("0o660") == 0660u);
  CHECK(parse_file_mode("0O755") == 0755u);
  CHECK(parse_file_mode("04755") == 04755u);  // the caller decides whether setuid bits are allowed
  CHECK(parse_file_mode("0") == 0u);
  CHECK(parse_file_mode("384") == 0600u);
  CHECK(parse_file_mode("077777777777777777777777") == std::numeric_limits<uint64_t>::max());
  for (const char* bad : {"", "0o", "0800", "0o8", "-0600", "+0600", "06 00", "0x180", "rw-------", "0600 "}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_file_mode(bad).has_value());
  }
}
