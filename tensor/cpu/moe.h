// Mixture-of-experts routing kernels: the top-k gate's integer decisions
// (which expert, which capacity slot) and the moves between tokens and the
// [E, capacity, C] expert buffers (DeepSpeed's sharded_moe.py einsums
// "sec,sm->ecm" and "sec,ecm->sm", done as index moves instead of dense
// one-hot products). Raw pointers; T is float or double. A CUDA twin with the
// same signatures is planned (tensor/cuda/moe.cu).
#pragma once
#include <cstdint>

namespace ms::cpu {

// Each token's k experts from its gates (S, E): choice 0 = argmax, choice 1
// (k == 2) = argmax over the other experts; ties go to the lower index, as
// torch.argmax. expert (S, k); first_counts (E) = tokens whose choice 0 is e
// (DeepSpeed's mask1 sums); counts (E) = all choices to e (exp_counts);
// fraction (E) = first_counts / S (l_aux's ce: top-2 uses only mask1 too).
template <typename T>
void moe_choose(const T* gates, int64_t S, int64_t E, int64_t k, int32_t* expert,
                int32_t* first_counts, int32_t* counts, T* fraction);

// Capacity slots in position order: choice 0 of token s takes the next free
// slot of its expert; choice 1 slots start after all of that expert's choice-0
// tokens (DeepSpeed's `locations2 += sum(mask1)`). A slot >= capacity is -1
// (dropped). kept (E) = tokens placed per expert.
void moe_assign_slots(const int32_t* expert, const int32_t* first_counts, int64_t S, int64_t E,
                      int64_t k, int64_t capacity, int32_t* slot, int32_t* kept);

// weights (S, k) = gates[s, expert] for kept choices, 0 for dropped ones;
// renormalize (top-2): divided by max(sum of the kept gates, eps).
template <typename T>
void moe_gate_weights_forward(T* weights, const T* gates, const int32_t* expert,
                              const int32_t* slot, int64_t S, int64_t E, int64_t k,
                              bool renormalize, T eps);
// dgates (S, E) = zero, then the chain rule of the forward at the kept choices.
template <typename T>
void moe_gate_weights_backward(T* dgates, const T* dweights, const T* weights, const T* gates,
                               const int32_t* expert, const int32_t* slot, int64_t S, int64_t E,
                               int64_t k, bool renormalize, T eps);

// buffer (E, capacity, C) = zero, then x[s] copied into (expert, slot) of
// every kept choice.
template <typename T>
void moe_dispatch_forward(T* buffer, const T* x, const int32_t* expert, const int32_t* slot,
                          int64_t S, int64_t k, int64_t capacity, int64_t E, int64_t C);
// dx (S, C) = the sum of the gradients at the token's kept slots.
template <typename T>
void moe_dispatch_backward(T* dx, const T* dbuffer, const int32_t* expert, const int32_t* slot,
                           int64_t S, int64_t k, int64_t capacity, int64_t C);

// out (S, C) = Σ over kept choices of weights[s, j] · y[expert, slot].
template <typename T>
void moe_combine_forward(T* out, const T* y, const T* weights, const int32_t* expert,
                         const int32_t* slot, int64_t S, int64_t k, int64_t capacity, int64_t C);
// dy (E, capacity, C) = zero, then weights · dout at each kept slot (an empty
// slot's gradient is an exact 0); dweights (S, k) = <dout[s], y[slot]>.
template <typename T>
void moe_combine_backward(T* dy, T* dweights, const T* dout, const T* y, const T* weights,
                          const int32_t* expert, const int32_t* slot, int64_t S, int64_t k,
                          int64_t capacity, int64_t E, int64_t C);

}  // namespace ms::cpu
