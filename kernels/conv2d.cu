// conv2d.cu -- 2-D convolution (NCHW, weight (c_out, c_in, kh, kw), no bias) for CuPy RawModule.
//
// Two ways to run the same convolution, both as a matrix product C = A B:
//
//   forward          y[c_out, (b,oh,ow)]   = w[c_out, (ci,r,s)]  . col[(ci,r,s), (b,oh,ow)]
//   backward-data    gx[c_in, (b,ih,iw)]   = w^T[c_in, (co,r,s)] . gy[(co,r,s), (b,ih,iw)]
//   backward-weight  gw[c_out, (ci,r,s)]   = gy[c_out, (b,oh,ow)] . col^T[(b,oh,ow), (ci,r,s)]
//
// where col is the "im2col" matrix: col[(ci,r,s), (b,oh,ow)] = x[b, ci, oh*sh - ph + r, ow*sw - pw + s]
// (zero in the padding).
//
// 1. im2col + cuBLAS + col2im (minires "cupy"): `im2col` writes col explicitly, one thread per
//    entry; cuBLAS does the product through cupy.matmul; backward-data forms the gradient of col
//    and `col2im` folds it back, one thread per INPUT pixel that gathers the <= kh*kw entries that
//    read it (no atomics, no races). Consecutive threads handle consecutive output pixels ow, so
//    reads of x are (strided) contiguous and writes of col are fully coalesced.
//
// 2. Tiled implicit GEMM (minires "cupy-tiled"): the same three products without ever storing col.
//    One 16x16-thread block computes a TILE_M x TILE_N tile of C; each thread owns MICRO x MICRO
//    outputs at rows ty + 16*i and columns tx + 16*j. The block walks the reduction axis in slabs
//    of TILE_K: it stages an A slab (TILE_M x TILE_K) and a B slab (TILE_K x TILE_N) in shared
//    memory, every entry computed on the fly from x, w or gy by the same index math as im2col,
//    then each thread does MICRO*MICRO*TILE_K multiply-adds out of shared memory / registers.
//    Each value fetched from global memory is thus reused TILE_M (or TILE_N) times.
//    Loads are shaped for coalescing: A slabs are read with k fastest (a row of w or gy is
//    contiguous in k), B slabs with the column index fastest (neighbouring output pixels). The A
//    slab is stored transposed (a_tile[k][m]) with one padding column against bank conflicts.
//    backward-weight has a short C (c_out x c_in*kh*kw) but a long reduction (n*out_h*out_w), so
//    it splits the reduction over gridDim.z blocks ("split-K"); each writes a partial C and the
//    host sums the partials (deterministic, no atomics).
//
// Index math shared with the Python kernels (kernels/conv2d_index.py, same names):
//   input_index(o, t)  = o*s - p + t           (or -1 in the padding)
//   output_index(i, t) = (i + p - t) / s       (or -1 if not exact / out of range)
// All flat indices are int: the host checks that every array has fewer than 2^31 elements.
//
// `real` is float or double: minires compiles this file once per dtype with -DMINIRES_REAL=...
typedef MINIRES_REAL real;

#define TILE_M 64
#define TILE_N 64
#define TILE_K 16
#define MICRO 4
#define BLOCK_SIDE 16  // TILE_M / MICRO == TILE_N / MICRO; blocks are BLOCK_SIDE x BLOCK_SIDE threads

struct Geometry {
    int n, c_in, h, w, c_out, kh, kw, out_h, out_w, stride_h, stride_w, pad_h, pad_w;
};

__device__ __forceinline__ int input_index(int out_pos, int tap, int stride, int pad, int in_size) {
    int i = out_pos * stride - pad + tap;
    return (i < 0 || i >= in_size) ? -1 : i;
}

__device__ __forceinline__ int output_index(int in_pos, int tap, int stride, int pad, int out_size) {
    int shifted = in_pos + pad - tap;
    if (shifted < 0 || shifted % stride != 0) return -1;
    int o = shifted / stride;
    return o >= out_size ? -1 : o;
}

// Flat index into x of column-matrix entry (row = (ci,r,s), col = (b,oh,ow)); -1 in the padding.
__device__ __forceinline__ int im2col_value_index(int row, int col, const Geometry& g) {
    int s = row % g.kw, r = (row / g.kw) % g.kh, ci = row / (g.kw * g.kh);
    int ow = col % g.out_w, oh = (col / g.out_w) % g.out_h, b = col / (g.out_w * g.out_h);
    int ih = input_index(oh, r, g.stride_h, g.pad_h, g.h);
    int iw = input_index(ow, s, g.stride_w, g.pad_w, g.w);
    if (ih < 0 || iw < 0) return -1;
    return ((b * g.c_in + ci) * g.h + ih) * g.w + iw;
}

#define GEOMETRY_PARAMS int n, int c_in, int h, int w, int c_out, int kh, int kw, int out_h, \
    int out_w, int stride_h, int stride_w, int pad_h, int pad_w
#define GEOMETRY {n, c_in, h, w, c_out, kh, kw, out_h, out_w, stride_h, stride_w, pad_h, pad_w}

// ------------------------------------------------------------------------- im2col / col2im
// One thread per column-matrix entry; col is (c_in*kh*kw) x (n*out_h*out_w), row-major.
extern "C" __global__ void im2col(const real* x, real* col, GEOMETRY_PARAMS) {
    const Geometry g = GEOMETRY;
    int columns = n * out_h * out_w;
    int entry = blockIdx.x * blockDim.x + threadIdx.x;
    if (entry >= c_in * kh * kw * columns) return;
    int source = im2col_value_index(entry / columns, entry % columns, g);
    col[entry] = source < 0 ? real(0) : x[source];
}

// One thread per input pixel (b, ci, ih, iw): gathers the gradient of every column entry that read it.
extern "C" __global__ void col2im(const real* gcol, real* gx, GEOMETRY_PARAMS) {
    int pixel = blockIdx.x * blockDim.x + threadIdx.x;
    if (pixel >= n * c_in * h * w) return;
    int columns = n * out_h * out_w;
    int iw = pixel % w, ih = (pixel / w) % h, ci = (pixel / (w * h)) % c_in, b = pixel / (w * h * c_in);
    real total = 0;
    for (int r = 0; r < kh; ++r) {
        int oh = output_index(ih, r, stride_h, pad_h, out_h);
        if (oh < 0) continue;
        for (int s = 0; s < kw; ++s) {
            int ow = output_index(iw, s, stride_w, pad_w, out_w);
            if (ow >= 0) total += gcol[((ci * kh + r) * kw + s) * columns + (b * out_h + oh) * out_w + ow];
        }
    }
    gx[pixel] = total;
}

// ------------------------------------------------------------------------- implicit GEMM
// Each problem says how to read A[m][k] and B[k][j] (zero outside the matrix) and where C[m][j] goes.

struct ForwardProblem {  // A = w (c_out x c_in*kh*kw), B = col(x), C = y (NCHW)
    const real* x; const real* weight; Geometry g;
    __device__ real a(int m, int k) const { return weight[m * (g.c_in * g.kh * g.kw) + k]; }
    __device__ real b(int k, int j) const {
        int source = im2col_value_index(k, j, g);
        return source < 0 ? real(0) : x[source];
    }
    __device__ int c_index(int m, int j) const {
        int pixels = g.out_h * g.out_w;
        return ((j / pixels) * g.c_out + m) * pixels + j % pixels;
    }
};

struct BackwardDataProblem {  // A = w^T (c_in x c_out*kh*kw), B = gy read through output_index, C = gx
    const real* gy; const real* weight; Geometry g;
    __device__ real a(int m, int k) const {
        int taps = g.kh * g.kw;
        return weight[((k / taps) * g.c_in + m) * taps + k % taps];
    }
    __device__ real b(int k, int j) const {
        int s = k % g.kw, r = (k / g.kw) % g.kh, co = k / (g.kw * g.kh);
        int iw = j % g.w, ih = (j / g.w) % g.h, bi = j / (g.w * g.h);
        int oh = output_index(ih, r, g.stride_h, g.pad_h, g.out_h);
        int ow = output_index(iw, s, g.stride_w, g.pad_w, g.out_w);
        if (oh < 0 || ow < 0) return real(0);
        return gy[((bi * g.c_out + co) * g.out_h + oh) * g.out_w + ow];
    }
    __device__ int c_index(int m, int j) const {
        int pixels = g.h * g.w;
        return ((j / pixels) * g.c_in + m) * pixels + j % pixels;
    }
};

struct BackwardWeightProblem {  // A = gy (c_out x n*out_h*out_w), B = col(x)^T, C = gw (c_out x c_in*kh*kw)
    const real* gy; const real* x; Geometry g;
    __device__ real a(int m, int k) const {
        int pixels = g.out_h * g.out_w;
        return gy[((k / pixels) * g.c_out + m) * pixels + k % pixels];
    }
    __device__ real b(int k, int j) const {
        int source = im2col_value_index(j, k, g);
        return source < 0 ? real(0) : x[source];
    }
    __device__ int c_index(int m, int j) const { return m * (g.c_in * g.kh * g.kw) + j; }
};

// C[m][j] = sum over k in this block's chunk [blockIdx.z*k_chunk, +k_chunk) of A[m][k] B[k][j];
// written to out + blockIdx.z * m_size * n_size (gridDim.z == 1 except for split-K).
template <class Problem>
__device__ void implicit_gemm(const Problem& p, real* out, int m_size, int n_size, int k_size, int k_chunk) {
    __shared__ real a_tile[TILE_K][TILE_M + 1];
    __shared__ real b_tile[TILE_K][TILE_N];
    const int tx = threadIdx.x, ty = threadIdx.y, thread = ty * BLOCK_SIDE + tx;
    const int m0 = blockIdx.y * TILE_M, j0 = blockIdx.x * TILE_N;
    const int k_begin = blockIdx.z * k_chunk;
    const int k_end = k_begin + k_chunk < k_size ? k_begin + k_chunk : k_size;
    real acc[MICRO][MICRO] = {};

    for (int k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (int e = thread; e < TILE_M * TILE_K; e += BLOCK_SIDE * BLOCK_SIDE) {
            int kk = e % TILE_K, mm = e / TILE_K;  // k fastest: coalesced along a row of A
            int m = m0 + mm, k = k0 + kk;
            a_tile[kk][mm] = (m < m_size && k < k_end) ? p.a(m, k) : real(0);
        }
        for (int e = thread; e < TILE_K * TILE_N; e += BLOCK_SIDE * BLOCK_SIDE) {
            int jj = e % TILE_N, kk = e / TILE_N;  // column fastest: neighbouring pixels
            int j = j0 + jj, k = k0 + kk;
            b_tile[kk][jj] = (j < n_size && k < k_end) ? p.b(k, j) : real(0);
        }
        __syncthreads();
        for (int kk = 0; kk < TILE_K; ++kk) {
            real a_reg[MICRO], b_reg[MICRO];
            for (int i = 0; i < MICRO; ++i) a_reg[i] = a_tile[kk][ty + BLOCK_SIDE * i];
            for (int i = 0; i < MICRO; ++i) b_reg[i] = b_tile[kk][tx + BLOCK_SIDE * i];
            for (int i = 0; i < MICRO; ++i)
                for (int jx = 0; jx < MICRO; ++jx) acc[i][jx] += a_reg[i] * b_reg[jx];
        }
        __syncthreads();
    }
    out += blockIdx.z * m_size * n_size;
    for (int i = 0; i < MICRO; ++i) {
        int m = m0 + ty + BLOCK_SIDE * i;
        for (int jx = 0; jx < MICRO; ++jx) {
            int j = j0 + tx + BLOCK_SIDE * jx;
            if (m < m_size && j < n_size) out[p.c_index(m, j)] = acc[i][jx];
        }
    }
}

#define GEMM_PARAMS int m_size, int n_size, int k_size, int k_chunk
#define GEMM_ARGS m_size, n_size, k_size, k_chunk

// Arguments in the order (A source, B source, C) for all three directions.
extern "C" __global__ void conv2d_forward_tiled(const real* weight, const real* x, real* y, GEOMETRY_PARAMS, GEMM_PARAMS) {
    const ForwardProblem p = {x, weight, GEOMETRY};
    implicit_gemm(p, y, GEMM_ARGS);
}

extern "C" __global__ void conv2d_backward_data_tiled(const real* weight, const real* gy, real* gx, GEOMETRY_PARAMS,
                                                      GEMM_PARAMS) {
    const BackwardDataProblem p = {gy, weight, GEOMETRY};
    implicit_gemm(p, gx, GEMM_ARGS);
}

extern "C" __global__ void conv2d_backward_weight_tiled(const real* gy, const real* x, real* gw_partial,
                                                        GEOMETRY_PARAMS, GEMM_PARAMS) {
    const BackwardWeightProblem p = {gy, x, GEOMETRY};
    implicit_gemm(p, gw_partial, GEMM_ARGS);
}
