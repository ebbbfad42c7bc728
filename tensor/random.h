// A seeded, reproducible random generator (the same numbers on every platform
// and compiler, unlike std::normal_distribution).
//
// Algorithm: the 64-bit state is advanced by SplitMix64 (Steele, Lea & Flood,
// "Fast splittable pseudorandom number generators", 2014); uniform floats take
// the top 53 bits (values k/2^53 in [0, 1)); normals use the Box–Muller
// transform on two uniforms, producing values in pairs.
#pragma once
#include <cstdint>

namespace ms {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : state_(seed) {}
  uint64_t next_u64();
  double uniform();  // [0, 1) with 53 random bits
  double normal();   // standard normal
  uint64_t seed_state() const { return state_; }

 private:
  uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace ms
