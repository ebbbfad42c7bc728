// Autoregressive sampling from a GPT: temperature and top-k, one byte at a time.
#pragma once
#include <string>

#include "nn/gpt.h"

namespace ms {

struct SampleOptions {
  int64_t tokens = 200;
  double temperature = 0.8;  // 0 = greedy (argmax)
  int64_t top_k = 40;        // 0 = whole vocabulary
  uint64_t seed = 1;
};

// Continues `prompt` (bytes) by `opts.tokens` bytes. The context is cropped to
// the model's block_size; the model runs in eval mode without a graph. Runs on
// one rank alone: a parameter released by ZeRO-3 is an ms::Error (gather first).
std::string generate(GPT& model, const std::string& prompt, const SampleOptions& opts);

// A sample of raw bytes as a terminal can show it. Printed through "%s", the
// first NUL byte an untrained byte-level model samples ended the string there
// (an empty sample when it came first); a NUL or another C0 control besides
// newline and tab is invisible or acts on the terminal anyway. Those bytes
// become \xNN and a backslash \\, so every sampled byte stays countable;
// so do bytes >= 0x80 that are not part of a valid UTF-8 sequence (a
// terminal would garble them, and grep calls such output binary). Text and
// valid UTF-8 pass through.
std::string printable_sample(const std::string& bytes);

}  // namespace ms
