// A Layer that counts the forwards of the layer it wraps: how the
// checkpointing tests see a recompute happen (or not happen twice).
#pragma once
#include <memory>

#include "nn/gpt.h"  // Layer

namespace ms::test {

// Counts the forwards of the layer it wraps (an unnamed child: names unchanged).
class CountingLayer : public Layer {
 public:
  CountingLayer(std::shared_ptr<Layer> inner, int& count)
      : inner_(register_module("", std::move(inner))), count_(count) {}
  Tensor forward(const Tensor& x) override {
    ++count_;
    return inner_->forward(x);
  }

 private:
  std::shared_ptr<Layer> inner_;
  int& count_;
};

}  // namespace ms::test
