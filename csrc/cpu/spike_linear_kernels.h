// The spike_linear CPU kernels, written once and compiled once per ISA:
// spike_linear_cpu.cpp includes this file inside a namespace per ISA, after
// defining there Ops<float> / Ops<double> (that ISA's loads, spike masks,
// FMA and lane reduction, see the contract in spike_linear_cpu.cpp) and
//   SL_ATTR    the attributes of a helper inlined into a kernel (the ISA's
//              target + always_inline: a function with a wider target cannot
//              be inlined into one with a narrower one, so every helper
//              carries the kernel's target),
//   SL_KERNEL  the attributes of a kernel (the ISA's target, noinline: the
//              drivers below reach it through function tables).
// No include guard on purpose; it includes nothing itself.

// The spike bytes of block b (L columns from n0 = b * L) of row r as Ops
// Bytes; the partial last block (a.tail < L columns) zero-padded.
template <class T, class A>
SL_ATTR typename Ops<T>::Bytes block_bytes(const A& a, int64_t r, int64_t n0, bool partial) {
  using O = Ops<T>;
  const uint8_t* p = a.s + r * a.N + n0;
  if (!partial) return O::load_bytes(p);
  // Reading L bytes runs into the next row: masked off.
  if (r < a.tail_direct_rows) return O::and_bytes(O::load_bytes(p), O::load_bytes(a.tail_mask));
  // The end of the buffer: a zero-padded copy.
  alignas(64) uint8_t buf[64] = {};
  std::memcpy(buf, p, (size_t)a.tail);
  return O::load_bytes(buf);
}

// (args, the rows' spike masks, first row, first output)
template <class T>
using FwdFn = void (*)(const FwdArgs<T>&, typename Ops<T>::Mask*, int64_t, int64_t);

// ---------------------------------------------------------------------------
// Forward. The first k-block turns each block of spike bytes into an Ops
// mask (on AVX-512 a 16-bit k-mask) as it goes, and saves it in a per-thread
// buffer for the other k-blocks: they then pay one instruction per row and
// block for the 0 / 1 values (on the ports the FMAs need) instead of two or
// three, and the first pass's reads of the spikes overlap its FMAs.
// ---------------------------------------------------------------------------

// RB rows x KB outputs of y = spikes * W^T (+ bias); m: the RB rows' masks,
// a.nblk apart (written when Conv, read otherwise). Per (row, k): L partial
// sums, lane l summing n = l, l + L, l + 2L, ... in increasing n (the last,
// partial block zero-padded), then Ops::reduce's fixed tree, then + bias.
// This order is the same for every ISA, row blocking and thread count, so
// the result is too.
// Cnt: the bytes are counts 0..255, converted to values from the bytes
// themselves in every k-block (a mask buffer cannot hold them; m is unused)
// and multiplied then added (Ops::muladd): the same two roundings on every
// ISA, where an FMA's one rounding would differ from the baseline's.
template <class T, int KB, int RB, bool Conv, bool Cnt>
SL_KERNEL void fwd_block(const FwdArgs<T>& a, typename Ops<T>::Mask* m, int64_t r0, int64_t k0) {
  using O = Ops<T>;
  using Acc = typename O::Acc;
  using Mask = typename O::Mask;
  constexpr int L = lanes<T>();
  // locals: the mask stores would otherwise reload a's fields
  const int64_t N = a.N, nb = a.nblk, nfull = a.nfull;
  const T* w = a.w + k0 * N;
  const uint8_t* s = a.s + r0 * N;
  Acc acc[RB][KB];
  SL_UNROLL for (int r = 0; r < RB; ++r) SL_UNROLL for (int k = 0; k < KB; ++k) acc[r][k] = O::zero();
  for (int64_t b = 0; b < nfull; ++b) {
    Acc mv[RB];
    SL_UNROLL for (int r = 0; r < RB; ++r) {
      if (Cnt) {
        mv[r] = O::counts(O::load_bytes(s + r * N + b * L));
      } else if (Conv) {
        const Mask mk = O::mask(O::load_bytes(s + r * N + b * L));
        m[r * nb + b] = mk;
        mv[r] = O::unmask(mk);
      } else {
        mv[r] = O::unmask_at(m + r * nb + b);
      }
    }
    SL_UNROLL for (int k = 0; k < KB; ++k) {
      Acc wv = O::load(w + k * N + b * L);
      if (RB > 1) O::pin(wv);  // one load for the RB rows, not one per FMA
      SL_UNROLL for (int r = 0; r < RB; ++r) {
        if (Cnt)
          O::muladd(acc[r][k], mv[r], wv);
        else
          O::fma(acc[r][k], mv[r], wv);
      }
    }
  }
  if (a.tail) {
    Acc mv[RB];
    SL_UNROLL for (int r = 0; r < RB; ++r) {
      if (Cnt) {
        mv[r] = O::counts(block_bytes<T>(a, r0 + r, nfull * L, true));
      } else if (Conv) {
        const Mask mk = O::mask(block_bytes<T>(a, r0 + r, nfull * L, true));
        m[r * nb + nfull] = mk;
        mv[r] = O::unmask(mk);
      } else {
        mv[r] = O::unmask_at(m + r * nb + nfull);
      }
    }
    SL_UNROLL for (int k = 0; k < KB; ++k) {
      // the weight tails, zero-padded: a padded lane adds 0 * 0
      const Acc wv = O::load(a.wtail + (k0 + k) * L);
      SL_UNROLL for (int r = 0; r < RB; ++r) {
        if (Cnt)
          O::muladd(acc[r][k], mv[r], wv);
        else
          O::fma(acc[r][k], mv[r], wv);
      }
    }
  }
  SL_UNROLL for (int r = 0; r < RB; ++r) {
    T* y = a.y + (r0 + r) * a.K + k0;
    SL_UNROLL for (int k = 0; k < KB; ++k) {
      T v = O::reduce(acc[r][k]);
      if (a.bias) v = v + a.bias[k0 + k];
      y[k] = v;
    }
  }
}

// ---------------------------------------------------------------------------
// Weight gradient: KB outputs x CB blocks of L columns of gW = grad_out^T *
// spikes, over rows [r0, r1). Every element is its own accumulator, updated
// row after row (acc = acc + s[r, n] * g[r, k] for r = 0, 1, ..., M-1, FMA or
// not: the product is exact) and carried from one row tile to the next
// through the output: the plain left-to-right sum over rows, whatever the
// ISA, block shape, tiling or thread count.
// ---------------------------------------------------------------------------
// Cnt: counts, multiplied then added as in the forward.
template <class T, int KB, int CB, bool Cnt>
SL_ATTR void grad_row(typename Ops<T>::Acc (&acc)[KB][CB], const typename Ops<T>::Acc (&m)[CB], const T* g) {
  using O = Ops<T>;
  SL_UNROLL for (int k = 0; k < KB; ++k) {
    const typename O::Acc gb = O::bcast(g[k]);
    SL_UNROLL for (int c = 0; c < CB; ++c) {
      if (Cnt)
        O::muladd(acc[k][c], m[c], gb);
      else
        O::fma(acc[k][c], m[c], gb);
    }
  }
}

// Partial: one block holding the last a.tail (< L) columns.
template <class T, int KB, int CB, bool Partial, bool Cnt>
SL_KERNEL void grad_block(const GradArgs<T>& a, int64_t n0, int64_t k0, int64_t r0, int64_t r1) {
  using O = Ops<T>;
  using Acc = typename O::Acc;
  constexpr int L = lanes<T>();
  static_assert(!Partial || CB == 1, "a partial block is a single block");
  const int64_t N = a.N, K = a.K;
  const T* g = a.g + k0;
  Acc acc[KB][CB];
  SL_UNROLL for (int k = 0; k < KB; ++k) {
    const T* out = a.out + (k0 + k) * N + n0;
    SL_UNROLL for (int c = 0; c < CB; ++c) {
      if (r0 == 0) {
        acc[k][c] = O::zero();
      } else if (Partial) {
        alignas(64) T buf[L] = {};
        std::memcpy(buf, out, sizeof(T) * (size_t)a.tail);
        acc[k][c] = O::load(buf);
      } else {
        acc[k][c] = O::load(out + c * L);
      }
    }
  }
  for (int64_t r = r0; r < r1; ++r) {
    Acc m[CB];
    SL_UNROLL for (int c = 0; c < CB; ++c) {
      const typename O::Bytes by = block_bytes<T>(a, r, n0 + c * L, Partial);
      m[c] = Cnt ? O::counts(by) : O::spikes(by);
    }
    grad_row<T, KB, CB, Cnt>(acc, m, g + r * K);
  }
  SL_UNROLL for (int k = 0; k < KB; ++k) {
    T* out = a.out + (k0 + k) * N + n0;
    if (Partial) {
      alignas(64) T buf[L];
      O::store(buf, acc[k][0]);
      std::memcpy(out, buf, sizeof(T) * (size_t)a.tail);
    } else {
      SL_UNROLL for (int c = 0; c < CB; ++c) O::store(out + c * L, acc[k][c]);
    }
  }
}

// ---------------------------------------------------------------------------
// Drivers: blocks of KB = 1..KBmax outputs are picked from tables (the block
// sizes must be compile-time for the accumulators to live in registers).
// ---------------------------------------------------------------------------
template <class T, int RB, int... I>
FwdFn<T> fwd_pick(int kb, bool conv, bool cnt, std::integer_sequence<int, I...>) {
  static constexpr FwdFn<T> tab[3][sizeof...(I)] = {{&fwd_block<T, I + 1, RB, false, false>...},
                                                    {&fwd_block<T, I + 1, RB, true, false>...},
                                                    {&fwd_block<T, I + 1, RB, false, true>...}};
  return tab[cnt ? 2 : conv ? 1 : 0][kb - 1];
}

template <class T, int CB, bool Partial, int... I>
GradFn<T> grad_pick(int kb, bool cnt, std::integer_sequence<int, I...>) {
  static constexpr GradFn<T> tab[2][sizeof...(I)] = {{&grad_block<T, I + 1, CB, Partial, false>...},
                                                     {&grad_block<T, I + 1, CB, Partial, true>...}};
  return tab[cnt][kb - 1];
}

template <class T>
void forward(const FwdArgs<T>& a) {
  using Mask = typename Ops<T>::Mask;
  constexpr int KBM = Ops<T>::kFwdKB, RB = Ops<T>::kFwdRB;
  using Seq = std::make_integer_sequence<int, KBM>;
  const KSplit ks(a.K, KBM);
  const int64_t nrb = (a.M + RB - 1) / RB, nb = std::max<int64_t>(a.nblk, 1);
  // Row blocks in groups of G, whose masks (~8 KB) stay in L1 with the
  // current k-block's weights (KB * N values).
  const int64_t G = std::max<int64_t>(1, 8192 / ((int64_t)RB * nb * (int64_t)sizeof(Mask)));
  const int64_t work = std::max<int64_t>(1, (int64_t)RB * a.K * std::max<int64_t>(a.N, 1));
  at::parallel_for(0, nrb, std::max<int64_t>(1, (int64_t(1) << 16) / work), [&](int64_t i0, int64_t i1) {
    std::vector<Mask> mbuf((size_t)(std::min(G, i1 - i0) * RB * nb));
    for (int64_t g0 = i0; g0 < i1; g0 += G) {
      const int64_t g1 = std::min(i1, g0 + G), rA = g0 * RB;
      for (int64_t kb = 0; kb < ks.n; ++kb) {
        const int64_t k0 = ks.start(kb);
        const int kbs = ks.size(kb);
        const FwdFn<T> f = fwd_pick<T, RB>(kbs, kb == 0, a.counts, Seq{});
        for (int64_t rb = g0; rb < g1; ++rb) {
          const int64_t r0 = rb * RB;
          Mask* m = mbuf.data() + (r0 - rA) * nb;
          if (r0 + RB <= a.M) {
            f(a, m, r0, k0);
          } else {
            const FwdFn<T> f1 = fwd_pick<T, 1>(kbs, kb == 0, a.counts, Seq{});
            for (int64_t r = r0; r < a.M; ++r) f1(a, m + (r - r0) * nb, r, k0);
          }
        }
      }
    }
  });
}

template <class T>
void weight_grad(const GradArgs<T>& a) {
  constexpr int KBM = Ops<T>::kGradKB, CB = Ops<T>::kGradCB, L = lanes<T>();
  using Seq = std::make_integer_sequence<int, KBM>;
  const KSplit ks(a.K, KBM);
  // Column units: CB blocks of L columns, then the full blocks left over one
  // by one, then the partial block.
  const int64_t nfull = a.N / L, nbig = nfull / CB, nsingle = nfull % CB;
  const int64_t units = nbig + nsingle + (a.tail ? 1 : 0);
  // Rows in tiles of RT: a tile's spikes (RT lines per unit, the next unit
  // using the rest of those lines) stay in L1 for the units of a thread,
  // where one unit over all rows would fetch a line per row from L2 and
  // again for the next unit.
  constexpr int64_t RT = 256;
  const int64_t work = std::max<int64_t>(1, (int64_t)a.K * CB * L * std::max<int64_t>(a.M, 1));
  at::parallel_for(0, units, std::max<int64_t>(1, (int64_t(1) << 16) / work), [&](int64_t u0, int64_t u1) {
    for (int64_t r0 = 0; r0 < std::max<int64_t>(a.M, 1); r0 += RT) {
      const int64_t r1 = std::min(a.M, r0 + RT);
      for (int64_t u = u0; u < u1; ++u) {
        for (int64_t kb = 0; kb < ks.n; ++kb) {
          const int64_t k0 = ks.start(kb);
          const int kbs = ks.size(kb);
          if (u < nbig)
            grad_pick<T, CB, false>(kbs, a.counts, Seq{})(a, u * CB * L, k0, r0, r1);
          else if (u < nbig + nsingle)
            grad_pick<T, 1, false>(kbs, a.counts, Seq{})(a, (nbig * CB + (u - nbig)) * L, k0, r0, r1);
          else
            grad_pick<T, 1, true>(kbs, a.counts, Seq{})(a, nfull * L, k0, r0, r1);
        }
      }
    }
  });
}
