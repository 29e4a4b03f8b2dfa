// The per-origin rate limit of requests from the broker: a token bucket per
// origin (`rate` tokens a second, `burst` at most). MQTT tells a subscriber
// nothing of who published, so the origin is the answer topic a request
// names: the requester's own inbox (authentication is the broker's job, by
// its ACLs). The table is bounded: past `max_origins` it starts afresh.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace hostlet::mqtt {

class RateLimit {
 public:
  RateLimit(double rate, double burst, size_t max_origins = 4096)
      : rate_(rate), burst_(std::max(burst, 1.0)), max_origins_(max_origins) {}

  // Takes a token for `origin` at time now_ns; false when it has none.
  bool take(const std::string& origin, uint64_t now_ns) {
    auto it = buckets_.find(origin);
    if (it == buckets_.end()) {
      if (buckets_.size() >= max_origins_) buckets_.clear();
      it = buckets_.emplace(origin, Bucket{burst_, now_ns}).first;
    }
    Bucket& b = it->second;
    const double elapsed = static_cast<double>(now_ns - b.at_ns) / 1e9;
    b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
    b.at_ns = now_ns;
    if (b.tokens < 1.0) return false;
    b.tokens -= 1.0;
    return true;
  }

 private:
  struct Bucket {
    double tokens;
    uint64_t at_ns;
  };
  double rate_, burst_;
  size_t max_origins_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace hostlet::mqtt
