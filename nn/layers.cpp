#include "nn/layers.h"

namespace ms {

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator& gen, double init_std) {
  weight = register_parameter("weight", randn({in, out}, gen, 0, init_std));
  if (with_bias) bias = register_parameter("bias", zeros({out}));
}

Embedding::Embedding(int64_t num, int64_t dim, Generator& gen, double init_std) {
  weight = register_parameter("weight", randn({num, dim}, gen, 0, init_std));
}

LayerNorm::LayerNorm(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", ones({dim}));
  bias = register_parameter("bias", zeros({dim}));
}

}  // namespace ms
