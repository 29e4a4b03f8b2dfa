// Tests for core/edit_distance.cpp: "did you mean".
#include "edit_distance.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace hostlet;

TEST_CASE("edit_distance: counts insertions, deletions and substitutions") {
  CHECK(edit_distance("", "") == 0);
  CHECK(edit_distance("abc", "abc") == 0);
  CHECK(edit_distance("", "abc") == 3);
  CHECK(edit_distance("abc", "") == 3);
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(edit_distance("threadpol", "threadpool") == 1);
  CHECK(edit_distance("ab", "ba") == 2);  // a transposition is two edits
}

TEST_CASE("edit_distance: did_you_mean picks the closest candidate within a third of the word") {
  const std::vector<std::string> keys = {"threadpool", "plugin_dir", "log_level", "lag_warn"};
  CHECK(did_you_mean("threadpol", keys) == "threadpool");
  CHECK(did_you_mean("thredpool", keys) == "threadpool");
  CHECK(did_you_mean("thraedpool", keys) == "threadpool");  // 2 edits, 10 letters
  CHECK(did_you_mean("loglevel", keys) == "log_level");
  CHECK(did_you_mean("lag_warn_ms", keys) == "lag_warn");  // 3 edits, 11 letters
  CHECK(did_you_mean("colour", keys).empty());
  CHECK(did_you_mean("ab", {"ac", "xy"}) == "ac");  // short words allow one edit
  CHECK(did_you_mean("ab", {"cd"}).empty());
  CHECK(did_you_mean("x", {}).empty());
  CHECK(did_you_mean("", {"a"}) == "a");
}

TEST_CASE("edit_distance: did_you_mean prefers the first of equally close candidates") {
  CHECK(did_you_mean("cat", {"bat", "cut"}) == "bat");
  CHECK(did_you_mean("cat", {"cut", "bat"}) == "cut");
}
