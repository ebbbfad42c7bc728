// Every CUDA kernel family, for the dispatch in autograd/ops_*.cpp: each
// header has its tensor/cpu/ twin's signatures (device pointers, the stream
// last and never defaulted: pass cuda::current_stream(), stream.h), so an op's
// device switch is one line per kernel.
// Built only with CUDA=1.
#pragma once

#include "tensor/cuda/adamw.h"
#include "tensor/cuda/attention.h"
#include "tensor/cuda/cross_entropy.h"
#include "tensor/cuda/elementwise.h"
#include "tensor/cuda/embedding.h"
#include "tensor/cuda/gelu.h"
#include "tensor/cuda/gemm.h"
#include "tensor/cuda/layernorm.h"
#include "tensor/cuda/reductions.h"
#include "tensor/cuda/softmax.h"
