#include "nn/data.h"

#include <fstream>
#include <iterator>

namespace ms {

TokenData TokenData::load(const std::string& path, double train_fraction) {
  std::ifstream in(path, std::ios::binary);
  MS_CHECK(in.good(), "--data: cannot open '", path, "' (give a file of raw bytes)");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  MS_CHECK(!bytes.empty(), "--data: '", path, "' is empty");
  size_t split = static_cast<size_t>(static_cast<double>(bytes.size()) * train_fraction);
  return TokenData(std::vector<uint8_t>(bytes.begin(), bytes.begin() + split),
                   std::vector<uint8_t>(bytes.begin() + split, bytes.end()));
}

Batch TokenData::window(const std::vector<uint8_t>& buf, int64_t w, int64_t B, int64_t T,
                        const char* split) {
  int64_t n = static_cast<int64_t>(buf.size()), bt = B * T;
  MS_CHECK(B > 0 && T > 0, "batch: batch size ", B, " and sequence length ", T,
           " must be positive");
  MS_CHECK(n >= bt + 1, "data: the ", split, " split has ", n, " bytes, fewer than one batch (",
           "batch-size ", B, " × seq-len ", T, " + 1 = ", bt + 1,
           "); use a smaller batch or more data");
  int64_t windows = (n - 1) / bt;
  int64_t offset = (w % windows) * bt;
  std::vector<int32_t> x(bt), y(bt);
  for (int64_t i = 0; i < bt; ++i) {
    x[i] = buf[offset + i];
    y[i] = buf[offset + i + 1];
  }
  return {from_vector(x, {B, T}), from_vector(y, {B, T})};
}

Batch TokenData::train_batch(int64_t step, int64_t rank, int64_t world, int64_t B,
                             int64_t T) const {
  return window(train_, step * world + rank, B, T, "training");
}

Batch TokenData::val_batch(int64_t index, int64_t B, int64_t T) const {
  return window(val_, index, B, T, "validation");
}

}  // namespace ms
