// Histogram: the latency histogram taskd_loadgen and taskd_viewers share.
#ifndef TASKD_BENCH_HISTOGRAM_H_
#define TASKD_BENCH_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace taskd::bench {

// A lock-free log-linear histogram of microseconds: exact below 64 us, then
// 64 buckets per power of two (under 1.6% error), up to about 2^40 us.
class Histogram {
 public:
  void Record(int64_t micros) {
    if (micros < 0) micros = 0;
    buckets_[Index(micros)].fetch_add(1, std::memory_order_relaxed);
  }

  int64_t Count() const {
    int64_t n = 0;
    for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
    return n;
  }

  // The value at quantile q (0..1): the upper end of the bucket it falls in.
  int64_t Quantile(double q) const {
    int64_t total = Count();
    if (total == 0) return 0;
    int64_t rank = static_cast<int64_t>(q * static_cast<double>(total - 1));
    int64_t seen = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen > rank) return UpperBound(i);
    }
    return UpperBound(buckets_.size() - 1);
  }

 private:
  static constexpr int kSub = 64;  // buckets per power of two
  static constexpr int kLog = 6;   // log2(kSub)
  static constexpr int kPowers = 35;

  static size_t Index(int64_t v) {
    if (v < kSub) return static_cast<size_t>(v);
    int k = 63 - __builtin_clzll(static_cast<uint64_t>(v));  // v in [2^k, ..)
    if (k - kLog + 1 >= kPowers) return kSub * kPowers - 1;
    int64_t sub = (v >> (k - kLog)) & (kSub - 1);
    return static_cast<size_t>((k - kLog + 1) * kSub + sub);
  }
  static int64_t UpperBound(size_t index) {
    if (index < kSub) return static_cast<int64_t>(index);
    int64_t k = static_cast<int64_t>(index / kSub) + kLog - 1;
    int64_t sub = static_cast<int64_t>(index % kSub);
    return ((kSub + sub + 1) << (k - kLog)) - 1;
  }

  std::array<std::atomic<int64_t>, kSub * kPowers> buckets_{};
};

}  // namespace taskd::bench

#endif  // TASKD_BENCH_HISTOGRAM_H_
