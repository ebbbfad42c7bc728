// The data contract (docs/architecture.md): tokens are bytes; a batch is B·T+1
// consecutive tokens, x = buf[o : o+BT], y = buf[o+1 : o+BT+1], each (B, T).
// At global step s, data-parallel rank r of D reads window w = s·D + r, at
// offset o = (w mod W)·B·T where W = ⌊(n−1)/(B·T)⌋ windows fit in the split —
// so the reads wrap to 0 instead of running past the end. At step s the D
// ranks together read [s·D·B·T, (s+1)·D·B·T): the very rows, in order, that
// one process with batch D·B reads at step s (up to the wrap-around point).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tensor/factory.h"

namespace ms {

struct Batch {
  Tensor x, y;  // i32 (B, T)
};

class TokenData {
 public:
  // Maps a regular file of raw bytes read-only (mmap), as llm.c's and
  // nanoGPT's loaders (np.memmap) do: nothing is copied, a batch touches only
  // its own pages, and ranks on one machine share the page cache instead of
  // each holding the file twice. The first `train_fraction` trains, the rest
  // validates. A device, FIFO or directory is an ms::Error naming the path
  // (/dev/zero would never end, a FIFO would block). The file must not be
  // truncated while in use (reading a vanished page is SIGBUS).
  static TokenData load(const std::string& path, double train_fraction = 0.9);
  // Bytes already in memory.
  TokenData(std::vector<uint8_t> train, std::vector<uint8_t> val);

  Batch train_batch(int64_t step, int64_t rank, int64_t world, int64_t B, int64_t T) const;
  // The i-th validation batch (windows from the start of the validation split).
  Batch val_batch(int64_t index, int64_t B, int64_t T) const;
  size_t train_size() const { return train_.size(); }
  size_t val_size() const { return val_.size(); }

 private:
  using Bytes = std::span<const uint8_t>;
  TokenData(std::shared_ptr<const void> owner, Bytes train, Bytes val)
      : owner_(std::move(owner)), train_(train), val_(val) {}
  static Batch window(Bytes buf, int64_t w, int64_t B, int64_t T, const char* split);
  std::shared_ptr<const void> owner_;  // the mapping or the vectors; copies share it
  Bytes train_, val_;
};

}  // namespace ms
