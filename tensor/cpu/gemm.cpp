// GEMM written from scratch, following the structure of
// "Anatomy of High-Performance Matrix Multiplication" (Goto & van de Geijn, 2008)
// as refined by BLIS ("BLIS: A Framework for Rapidly Instantiating BLAS
// Functionality", Van Zee & van de Geijn, 2015).
//
// The idea in one paragraph: a matrix multiply does O(n^3) flops on O(n^2) data,
// so it can run at the FMA units' peak *if* every element loaded from memory is
// reused many times from a fast cache level. We get that reuse by
//   1. cutting K into slabs of KC and M, N into blocks, so that one block of
//      op(B) (KC x NC, "Bp") lives in L2 and one sliver of op(A) (MR x KC) in L1;
//   2. *packing* those pieces into contiguous buffers in exactly the order the
//      micro-kernel reads them. Packing is also where a transpose happens: op(A)
//      and op(B) are gathered from whatever layout they have, so A·Bᵀ and Aᵀ·B
//      cost the same as A·B and no transposed copy is ever materialized. An
//      untransposed A already has its rows running along k, the way the kernel
//      walks its sliver, so it is read in place and only a ragged last sliver
//      is packed (read_a_in_place; BLIS's "sup", small/unpacked, kernels make
//      the same trade for skinny shapes, where packing is a visible share);
//   3. a micro-kernel that keeps an MR x NR tile of C in vector registers and,
//      for each k, loads NR values of Bp, broadcasts MR values of Ap and issues
//      MR*NR/lanes FMAs -- far more arithmetic than loads.
//
// Layout note. Our matrices are row-major, so a row of C is contiguous: the
// micro-kernel vectorizes along N (NR = a few vector widths) and broadcasts
// along M. That is BLIS's column-major kernel with the roles of A and B swapped,
// and correspondingly here Bp (vectorized operand) is the L2-resident block and
// each MR x KC sliver of Ap is reused from L1 across a whole row of tiles.
//
// Loop nest (per thread, over its own rectangle of C):
//   ic (<= MC rows of C) > pc (<= KC slab of K, pack Ap*) > jc (<= NC cols, pack Bp)
//     > ir (MR rows, Ap sliver in L1) > jr (NR cols, Bp sliver streamed from L2)
//       > micro-kernel over k in [0, kc)
//   (* or, with A read in place, only its last sliver of fewer than MR rows)
//
// Threads split C into a tm x tn grid of rectangles; each runs the nest above
// with its own (thread_local) packing buffers. Repacking B once per thread costs
// O(K*N) against O(M*N*K/threads) flops, which is why it is not shared.
//
// This file: blocking, threads, ISA dispatch and when to skip packing. The
// packing routines are in gemm_pack.h, the micro-kernels in gemm_kernels.cpp,
// the matrix-vector case in gemv.cpp, the f64 reference GEMM in gemm_f64.cpp.
#include "tensor/cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "tensor/cpu/gemm_kernels.h"
#include "tensor/cpu/gemm_pack.h"
#include "tensor/cpu/gemm_packed.h"
#include "tensor/cpu/vec_math.h"

namespace ms::cpu {
namespace {

using namespace gemm_detail;

struct Problem {
  bool ta, tb;
  int64_t K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  const float* bias = nullptr;  // (N) added to every row of C, or none
  // colsum_b (N) = Σ_k op(B)[k][:], summed from the packed Bp (gemm.h), or none.
  float* colsum_b = nullptr;
};

// sum[c] += Σ_k Bp[k·NR + c] over a whole sliver, in registers: with a run-time
// width the sums went back to memory on every k (a store-to-load chain per
// row), which made the column sums 2% of make run's step (perf).
template <int NR>
inline __attribute__((always_inline)) void sum_sliver(const float* Bp, int64_t kc, double* sum) {
  double s[NR];
#pragma omp simd
  for (int c = 0; c < NR; ++c) s[c] = sum[c];
  for (int64_t k = 0; k < kc; ++k, Bp += NR)
#pragma omp simd
    for (int c = 0; c < NR; ++c) s[c] += Bp[c];
#pragma omp simd
  for (int c = 0; c < NR; ++c) sum[c] = s[c];
}

// acc[c] += Σ_k Bp[k·nr + c] for c < valid: the column sums of one packed
// sliver (kc x nr), in double and k in order, so a column's total is summed
// exactly as reduce_sum's sum_rows sums dY's rows (the unfused twin). The
// padding columns (valid <= c < nr) are packed as zeros, summed and dropped.
MS_VECTOR_CLONES
void add_sliver_colsums(const float* Bp, int64_t kc, int nr, int valid, double* acc) {
  double sum[32] = {};
  for (int c = 0; c < valid; ++c) sum[c] = acc[c];
  if (nr == 32)
    sum_sliver<32>(Bp, kc, sum);
  else if (nr == 16)
    sum_sliver<16>(Bp, kc, sum);
  else
    for (int64_t k = 0; k < kc; ++k, Bp += nr)
      for (int c = 0; c < nr; ++c) sum[c] += Bp[c];
  for (int c = 0; c < valid; ++c) acc[c] = sum[c];
}

// Block sizes, chosen for Zen 5 (48 KiB L1d, 1 MiB L2 per core):
//   Ap sliver MR x KC (12 x 256 x 4 B = 12 KiB) stays in L1 across a row of tiles;
//   Bp block  KC x NC (256 x 768 x 4 B = 768 KiB) stays in L2 across the ir loop;
//   MC bounds the Ap buffer (it is streamed, it need not fit any cache). It is
//   2064 = 172 x 12 so a GPT step's M = B·T = 2048 rows are one block on one
//   thread: with 1920, op(B) was packed twice for every weight matrix.
// Largest step <= max (and a multiple of unit) that cuts n into equal blocks:
// 1024 rows with max 768 become 2 x 512 rather than 768 + 256, so no block is
// a thin leftover that repacks the other operand for little work.
int64_t even_step(int64_t n, int64_t max, int64_t unit) {
  const int64_t blocks = (n + max - 1) / max;
  return ((n + blocks - 1) / blocks + unit - 1) / unit * unit;
}

// Tests only (gemm_f32_force_packing): pack op(A) even where it could be read in place.
bool g_force_packing = false;

// Whether the micro-kernel reads op(A) in place, skipping pack_a: when op(A)
// is A itself (not Aᵀ), its rows are contiguous along k, the way the kernel
// walks its MR x kc sliver, so MR rows of A serve as the sliver. Packing A is
// a pass over M·K that the N/NR tiles of a row then reuse; at make run's
// C = 128 (N = 128..512) it was ~4% of rank 0's step (perf), and those GEMMs
// run 1–5% faster without it (bench_matmul --run-step against --packed).
// Only when the MR rows spread over L1's sets: a row stride that is a large
// power of two (4 KiB: all MR rows in one set) would make the rows evict
// each other, which the contiguous packed sliver never does. The same test
// on op(B) (rows ldb apart, kc of them) fails for every width a GPT has
// (768 floats: 4 set groups), and reading B in place measured ~20% slower
// on the tiny GPT's c_attn; so B is always packed.
bool read_a_in_place(bool trans_a, int64_t lda, int mr, RowsKernelFn rows_kernel) {
  if (rows_kernel == nullptr || trans_a || g_force_packing) return false;
  // L1: 64-byte lines, 64 sets (32 KiB, 8 ways on Zen 4; 48 KiB, 12 ways on
  // recent Intel cores). Count the rows whose first line shares a set; a
  // row's later lines keep the same offsets. Up to 6 of 8 ways: lda = 512
  // (6 rows a set) still ran ~4% faster in place at make run's shapes.
  int rows_in_set[64] = {};
  int most = 0;
  for (int r = 0; r < mr; ++r) {
    const int set = int((int64_t(r) * lda * int64_t(sizeof(float)) / 64) % 64);
    most = std::max(most, ++rows_in_set[set]);
  }
  return most <= 6;
}

template <int MR, int NR, int KC, int NC, int MC>
void gemm_region(const Problem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                 KernelFn kernel, RowsKernelFn rows_kernel) {
  static_assert(MC % MR == 0 && NC % NR == 0, "blocks must hold whole slivers");
  thread_local Scratch sa, sb;
  float* Ap = sa.get(size_t(MC) * KC);  // [MC/MR][KC][MR]
  float* Bp = sb.get(size_t(NC) * KC);  // [NC/NR][KC][NR]
  const int64_t MS = even_step(m1 - m0, MC, MR), NS = even_step(n1 - n0, NC, NR);
  const int64_t KS = even_step(p.K, KC, 1);
  // Column sums of op(B): the rectangles of the first row band (m0 == 0) pack
  // every column of B once, on their first ic block; together they cover [0, N).
  const bool sum_b = p.colsum_b != nullptr && m0 == 0;
  thread_local std::vector<double> colsum;  // (n1 - n0)
  if (sum_b) colsum.assign(size_t(n1 - n0), 0.0);
  const bool a_in_place = read_a_in_place(p.ta, p.lda, MR, rows_kernel);
  for (int64_t ic = m0; ic < m1; ic += MS) {
    const int64_t mc = std::min(MS, m1 - ic);
    // In place, only a last sliver of fewer than MR rows is packed (zero-padded).
    const int64_t whole = a_in_place ? mc / MR * MR : 0;
    for (int64_t pc = 0; pc < p.K; pc += KS) {
      const int64_t kc = std::min(KS, p.K - pc);
      // First K slab applies the caller's beta; later slabs accumulate.
      const float beta = pc == 0 ? p.beta : 1.0f;
      if (whole < mc) pack_a<MR>(p.ta, p.A, p.lda, ic + whole, mc - whole, pc, kc, Ap + whole * kc);
      for (int64_t jc = n0; jc < n1; jc += NS) {
        const int64_t nc = std::min(NS, n1 - jc);
        pack_b<NR>(p.tb, p.B, p.ldb, pc, kc, jc, nc, Bp);
        if (sum_b && ic == m0)
          for (int64_t jr = 0; jr < nc; jr += NR)
            add_sliver_colsums(Bp + jr * kc, kc, NR, int(std::min<int64_t>(NR, nc - jr)),
                               colsum.data() + (jc - n0) + jr);
        // With a bias, the first K slab's store adds it (the kernel's epilogue).
        const bool bias_tile = p.bias != nullptr && pc == 0;
        for (int64_t ir = 0; ir < mc; ir += MR) {
          // Read in place, the next sliver's rows come from memory on its
          // first tile; fetch them while this sliver's tiles compute.
          if (ir + MR < whole) prefetch_rows(p.A + (ic + ir + MR) * p.lda + pc, p.lda, MR, kc);
          for (int64_t jr = 0; jr < nc; jr += NR) {
            float* c = p.C + (ic + ir) * p.ldc + jc + jr;
            const int mr = int(std::min<int64_t>(MR, mc - ir));
            const int nr = int(std::min<int64_t>(NR, nc - jr));
            const float* bias = bias_tile ? p.bias + jc + jr : nullptr;
            if (ir < whole)
              rows_kernel(kc, p.A + (ic + ir) * p.lda + pc, p.lda, Bp + jr * kc, c, p.ldc, mr, nr,
                          p.alpha, beta, bias);
            else
              kernel(kc, Ap + ir * kc, Bp + jr * kc, c, p.ldc, mr, nr, p.alpha, beta, bias);
          }
        }
      }
    }
  }
  if (sum_b)
    for (int64_t j = n0; j < n1; ++j) p.colsum_b[j] = static_cast<float>(colsum[size_t(j - n0)]);
}

using RegionFn = void (*)(const Problem&, int64_t, int64_t, int64_t, int64_t, KernelFn,
                          RowsKernelFn);
using PackFn = void (*)(bool, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
struct Isa {
  const char* name;
  KernelFn kernel;
  RowsKernelFn rows_kernel;  // reads op(A) in place (read_a_in_place), or none
  RegionFn region;
  int mr, nr;
  PackFn pack_a, pack_b;  // for the packed-B entry points (gemm_packed.h)
};

// pack_b's arguments in pack_a's order (trans, X, ld, i0, m, p0, k, dst).
template <int NR>
void pack_b_as(bool tb, const float* B, int64_t ldb, int64_t j0, int64_t nc, int64_t p0, int64_t kc,
               float* Bp) {
  pack_b<NR>(tb, B, ldb, p0, kc, j0, nc, Bp);
}

const Isa kScalar{"scalar",  kernel_scalar_4x16, nullptr, gemm_region<4, 16, 256, 512, 512>, 4, 16,
                  pack_a<4>, pack_b_as<16>};
#ifdef MS_GEMM_X86
const Isa kAvx2{"avx2",    kernel_avx2_6x16, kernel_avx2_6x16_rows, gemm_region<6, 16, 256, 512, 2064>, 6, 16,
                pack_a<6>, pack_b_as<16>};
const Isa kAvx512{"avx512",   kernel_avx512_12x32, kernel_avx512_12x32_rows, gemm_region<12, 32, 256, 768, 2064>, 12, 32,
                  pack_a<12>, pack_b_as<32>};
#endif

const Isa* detect_isa() {
#ifdef MS_GEMM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return &kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &kAvx2;
#endif
  return &kScalar;
}

const Isa*& current_isa() {
  static const Isa* isa = detect_isa();
  return isa;
}

// Split C into tm x tn rectangles for nt threads, minimizing the perimeter
// M/tm + N/tn (the data each thread packs) while keeping rectangles whole slivers.
void thread_grid(int nt, int64_t M, int64_t N, int& tm, int& tn) {
  tm = 1, tn = nt;
  double best = 1e300;
  for (int a = 1; a <= nt; ++a) {
    if (nt % a) continue;
    const double cost = double(M) / a + double(N) / (nt / a);
    if (cost < best) best = cost, tm = a, tn = nt / a;
  }
}

}  // namespace

const char* gemm_f32_isa() {
  return current_isa()->name;
}

bool gemm_f32_force_isa(const char* name) {
  const Isa* want = nullptr;
  const std::string s = name ? name : "";
  const Isa* best = detect_isa();
  if (s == "scalar") want = &kScalar;
#ifdef MS_GEMM_X86
  if (s == "avx2" && best != &kScalar) want = &kAvx2;
  if (s == "avx512" && best == &kAvx512) want = &kAvx512;
#endif
  if (s.empty() || s == "auto") want = best;
  if (want) current_isa() = want;
  return want != nullptr;
}

void gemm_f32_force_packing(bool packed) {
  g_force_packing = packed;
}

namespace {

// colsum (N) = Σ_k op(B)[k][:] in double, k in order: the unfused twin of the
// packed column sums, for the shapes that skip the tiled path.
void colsum_b_reference(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb,
                        float* colsum) {
  for (int64_t j = 0; j < N; ++j) {
    double acc = 0;
    for (int64_t k = 0; k < K; ++k) acc += trans_b ? B[j * ldb + k] : B[k * ldb + j];
    colsum[j] = static_cast<float>(acc);
  }
}


void gemm_f32_impl(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                   const float* bias, float* C, int64_t ldc, float* colsum_b = nullptr) {
  if (colsum_b && (M <= 0 || N <= 0 || K <= 0 || alpha == 0.0f || M == 1 || N == 1)) {
    // Shapes the tiled path does not take (nothing to multiply, a row or a
    // column: gemv): the product, then the unfused column sums.
    gemm_f32_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, bias, C, ldc);
    return colsum_b_reference(trans_b, K, N, B, ldb, colsum_b);
  }
  if (M <= 0 || N <= 0) return;
  if (bias && (K <= 0 || alpha == 0.0f || M == 1 || N == 1)) {
    // No tiles to fold the bias into: start C at the bias, accumulate onto it.
    for (int64_t i = 0; i < M; ++i) std::memcpy(C + i * ldc, bias, sizeof(float) * size_t(N));
    return gemm_f32_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, 1.0f, nullptr, C, ldc);
  }
  if (K <= 0 || alpha == 0.0f) {  // C = beta * C, and nothing to multiply
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  if (M == 1)  // out = C row 0 (N); x = op(A) row 0; Y[j][k] = op(B)[k][j]
    return gemv(N, K, alpha, contiguous_vector(A, K, trans_a ? lda : 1), B, trans_b ? ldb : 1,
                trans_b ? 1 : ldb, beta, C, 1);
  if (N == 1)  // out = C column 0 (M); x = op(B) column 0; Y[i][k] = op(A)[i][k]
    return gemv(M, K, alpha, contiguous_vector(B, K, trans_b ? 1 : ldb), A, trans_a ? 1 : lda,
                trans_a ? lda : 1, beta, C, ldc);
  const Isa& isa = *current_isa();
  const Problem p{trans_a, trans_b, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, colsum_b};

  // One thread per ~2^18 multiply-adds (a few microseconds of work), so small
  // GEMMs pay no fork/join; none at all when already inside a parallel region.
  const double work = double(M) * double(N) * double(K);
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  nt = int(std::max(1.0, std::min<double>(nt, work / double(1 << 18))));
  if (nt == 1) return isa.region(p, 0, M, 0, N, isa.kernel, isa.rows_kernel);

  int tm, tn;
  thread_grid(nt, (M + isa.mr - 1) / isa.mr, (N + isa.nr - 1) / isa.nr, tm, tn);
  // Rectangle bounds in whole slivers: row block t covers slivers
  // [t*ms/tm, (t+1)*ms/tm) where ms = number of MR slivers.
  const int64_t ms = (M + isa.mr - 1) / isa.mr, ns = (N + isa.nr - 1) / isa.nr;
#pragma omp parallel num_threads(nt)
  {
    for (int t = omp_get_thread_num(); t < tm * tn; t += omp_get_num_threads()) {
      const int ti = t / tn, tj = t % tn;
      const int64_t m0 = std::min(M, ms * ti / tm * isa.mr);
      const int64_t m1 = std::min(M, ms * (ti + 1) / tm * isa.mr);
      const int64_t n0 = std::min(N, ns * tj / tn * isa.nr);
      const int64_t n1 = std::min(N, ns * (tj + 1) / tn * isa.nr);
      if (m0 < m1 && n0 < n1) isa.region(p, m0, m1, n0, n1, isa.kernel, isa.rows_kernel);
    }
  }
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) {
  gemm_f32_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, nullptr, C, ldc);
}

void gemm_f32_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float* A, int64_t lda, const float* B, int64_t ldb, const float* bias,
                   float* C, int64_t ldc) {
  gemm_f32_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, 0.0f, bias, C, ldc);
}

void gemm_f32_colsum_b(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                       float* C, int64_t ldc, float* colsum_b) {
  gemm_f32_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, nullptr, C, ldc,
                colsum_b);
}

PackedGemmF32 packed_gemm_f32() {
  const Isa* isa = current_isa();
  PackedGemmF32 g;
  g.mr = isa->mr;
  g.nr = isa->nr;
  g.impl = const_cast<Isa*>(isa);
  return g;
}

void PackedGemmF32::pack_b(bool trans_b, const float* B, int64_t ldb, int64_t k, int64_t n,
                           float* Bp) const {
  static_cast<const Isa*>(impl)->pack_b(trans_b, B, ldb, 0, n, 0, k, Bp);
}

void PackedGemmF32::multiply(bool trans_a, int64_t m, int64_t n, int64_t kc, float alpha,
                             const float* A, int64_t lda, const float* Bp, int64_t k_total,
                             int64_t k0, int64_t n0, float beta, float* C, int64_t ldc) const {
  if (m <= 0 || n <= 0) return;
  const Isa& isa = *static_cast<const Isa*>(impl);
  if (kc <= 0) {  // nothing to multiply: C = beta · C
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  thread_local Scratch sa;
  float* Ap = sa.get(size_t((m + isa.mr - 1) / isa.mr * isa.mr * kc));
  // op(A) in place where gemm_f32 would read it so (read_a_in_place): only a
  // last sliver of fewer than mr rows is packed.
  const int64_t whole =
      read_a_in_place(trans_a, lda, isa.mr, isa.rows_kernel) ? m / isa.mr * isa.mr : 0;
  if (whole < m) isa.pack_a(trans_a, A, lda, whole, m - whole, 0, kc, Ap + whole * kc);
  // Sliver s of Bp holds columns [s·nr, s·nr + nr) over all k_total rows.
  const float* b0 = Bp + (n0 / isa.nr) * isa.nr * k_total + k0 * isa.nr;
  for (int64_t ir = 0; ir < m; ir += isa.mr)
    for (int64_t jr = 0; jr < n; jr += isa.nr) {
      const int mr = int(std::min<int64_t>(isa.mr, m - ir));
      const int nr = int(std::min<int64_t>(isa.nr, n - jr));
      if (ir < whole)
        isa.rows_kernel(kc, A + ir * lda, lda, b0 + jr * k_total, C + ir * ldc + jr, ldc, mr, nr,
                        alpha, beta, nullptr);
      else
        isa.kernel(kc, Ap + ir * kc, b0 + jr * k_total, C + ir * ldc + jr, ldc, mr, nr, alpha,
                   beta, nullptr);
    }
}

}  // namespace ms::cpu
