// safetensors: the Hugging Face tensor file format, so checkpoints move between
// minispeed and PyTorch/transformers (https://github.com/huggingface/safetensors).
//
// Layout: an 8-byte little-endian u64 N; N bytes of UTF-8 JSON mapping each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end]} plus an
// optional "__metadata__" string->string map; then the raw little-endian,
// row-major data, with offsets relative to the start of that data.
//
// Files come from outside, so load_safetensors treats every byte as hostile:
// any malformed, truncated or inconsistent file is an ms::Error naming the file
// and the problem, and nothing is allocated for tensor data until the whole
// header has been checked against the file's size.
#pragma once
#include <map>
#include <string>

#include "nn/atomic_save.h"  // check_save_path: where a save may go
#include "tensor/tensor.h"

namespace ms {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;  // the "__metadata__" entry, if any
};

// Reads a whole file. Tensors are CPU, contiguous, and keep their stored dtype
// (F32, F64, BF16, F16 or I32; other safetensors dtypes are an error).
SafetensorsFile load_safetensors(const std::string& path);

// Writes `tensors` (CPU, any strides: non-contiguous ones are gathered in
// row-major order) and `metadata` plus "format": "pt", which transformers
// requires (as its save_pretrained writes it; a caller's other "format" is an
// ms::Error). The header matches the reference writer: compact JSON,
// "__metadata__" first, tensors by name, padded with spaces to a multiple of
// 8 bytes so the data is 8-byte aligned. The file is written to a
// temporary name beside `path`, synced, then renamed over it (AtomicFile), so
// a crash never leaves a half-written checkpoint under the real name. A path
// check_save_path refuses (a directory, a device, a FIFO...) is an ms::Error,
// never replaced; a symbolic link's target is written and the link kept.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace ms
