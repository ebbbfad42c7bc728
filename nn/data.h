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
#include <string>
#include <vector>

#include "tensor/factory.h"

namespace ms {

struct Batch {
  Tensor x, y;  // i32 (B, T)
};

class TokenData {
 public:
  // Opens a regular file of raw bytes and reads each batch's B·T+1 bytes with
  // one pread, as llm.c's loader does (fread at an offset): a batch touches
  // only its own pages, and ranks on one machine share the page cache instead
  // of each holding the file. The first `train_fraction` trains, the rest
  // validates. A device, FIFO or directory is an ms::Error naming the path
  // (/dev/zero would never end, a FIFO would block).
  // Not mmap (np.memmap, as nanoGPT): a file truncated under a mapping kills
  // the process with SIGBUS at the next vanished page, and a signal handler
  // can neither unwind nor abort an MPI job safely. A short pread is an
  // ordinary ms::Error ("... was truncated while training (was N bytes, now
  // M)") that ends the job naming the rank. The price is one copy of B·T+1
  // bytes per batch, which building the token tensors made anyway.
  static TokenData load(const std::string& path, double train_fraction = 0.9);
  // Bytes already in memory.
  TokenData(std::vector<uint8_t> train, std::vector<uint8_t> val);

  Batch train_batch(int64_t step, int64_t rank, int64_t world, int64_t B, int64_t T) const;
  // The i-th validation batch (windows from the start of the validation split).
  Batch val_batch(int64_t index, int64_t B, int64_t T) const;
  size_t train_size() const { return split_; }
  size_t val_size() const { return size_ - split_; }

 private:
  struct Source;  // where the bytes come from: the file (read with pread) or memory
  TokenData(std::shared_ptr<const Source> source, size_t split, size_t size)
      : source_(std::move(source)), split_(split), size_(size) {}
  // Window w of the split [begin, begin + n).
  Batch window(size_t begin, size_t n, int64_t w, int64_t B, int64_t T, const char* split) const;
  std::shared_ptr<const Source> source_;  // copies share it
  size_t split_, size_;  // bytes [0, split_) train, [split_, size_) validate
};

}  // namespace ms
