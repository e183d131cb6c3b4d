// batchnorm.cu -- fused BatchNorm (training mode) forward and backward, for CuPy RawModule.
//
// x is (n, c, hw) in memory (NCHW with the spatial axes flattened; hw = 1 for (N, C) input).
// Channel ch owns the m = n*hw values x[b, ch, s]; the flat index of its i-th value is
//     (i / hw * c + ch) * hw + i % hw.
//
// One block per channel does the whole job for that channel in one launch: the block's threads
// stride through the channel's m values (consecutive threads -> consecutive s: a warp reads one
// contiguous run of memory when hw is a multiple of 32; otherwise the run breaks where a row of hw
// values ends, down to 32 values c apart for (N, C) input, hw = 1), each keeps a private partial
// sum, and `block_sum` combines the partials (warp shuffles, then one value per warp through
// shared memory). Forward makes three passes over the channel -- the mean, the variance about that
// mean (two passes, so no catastrophic cancellation), then the normalisation -- and the re-reads
// come from L2.
// Backward makes two: the sums of gy and gy*xhat, then gx.
//
//   forward   mean = sum x / m,  var = sum (x - mean)^2 / m  (biased),  invstd = 1 / sqrt(var + eps)
//             y = (x - mean) * invstd * weight + bias
//   backward  xhat = (x - mean) * invstd,  gbias = sum gy,  gweight = sum gy * xhat
//             gx = weight * invstd / m * (m * gy - gbias - xhat * gweight)
//
// `batch_norm_update_running` is the running-statistics update that follows a training forward, one
// thread per channel (one launch instead of seven array operations):
//   running_mean = keep * running_mean + momentum * mean,  running_var = keep * running_var + momentum * var * unbias
// with keep = 1 - momentum and unbias = m / (m - 1) (the unbiased variance), both computed on the host.
//
// With only c blocks the launch is small for c = 16 (ResNet-20's first stage); the benchmark
// (python -m minires.bench gpu) shows what that costs.
//
// `real` is float or double: minires compiles this file once per dtype with -DMINIRES_REAL=...
typedef MINIRES_REAL real;

#define THREADS 256  // blockDim.x of every launch in this file; a multiple of 32

// The sum of `value` over the block, returned to every thread.
__device__ real block_sum(real value) {
    __shared__ real warp_totals[THREADS / 32];
    __shared__ real total;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
    if (lane == 0) warp_totals[warp] = value;
    __syncthreads();
    if (warp == 0) {
        value = lane < THREADS / 32 ? warp_totals[lane] : real(0);
        for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
        if (lane == 0) total = value;
    }
    __syncthreads();
    return total;
}

__device__ __forceinline__ int channel_value_index(int i, int ch, int c, int hw) {
    return (i / hw * c + ch) * hw + i % hw;
}

extern "C" __global__ void batch_norm_forward_train(const real* x, const real* weight, const real* bias, real* y,
                                                    real* mean_out, real* var_out, real* invstd_out,
                                                    int n, int c, int hw, real eps) {
    const int ch = blockIdx.x, m = n * hw;
    real partial = 0;
    for (int i = threadIdx.x; i < m; i += THREADS) partial += x[channel_value_index(i, ch, c, hw)];
    const real mean = block_sum(partial) / m;
    partial = 0;
    for (int i = threadIdx.x; i < m; i += THREADS) {
        real d = x[channel_value_index(i, ch, c, hw)] - mean;
        partial += d * d;
    }
    const real var = block_sum(partial) / m;
    const real invstd = real(1) / sqrt(var + eps);
    const real scale = weight[ch] * invstd, shift = bias[ch] - mean * scale;
    for (int i = threadIdx.x; i < m; i += THREADS) {
        int at = channel_value_index(i, ch, c, hw);
        y[at] = x[at] * scale + shift;
    }
    if (threadIdx.x == 0) {
        mean_out[ch] = mean;
        var_out[ch] = var;
        invstd_out[ch] = invstd;
    }
}

extern "C" __global__ void batch_norm_backward(const real* gy, const real* x, const real* weight, const real* mean,
                                               const real* invstd, real* gx, real* gweight, real* gbias,
                                               int n, int c, int hw) {
    const int ch = blockIdx.x, m = n * hw;
    const real mu = mean[ch], inv = invstd[ch];
    real partial_gy = 0, partial_gy_xhat = 0;
    for (int i = threadIdx.x; i < m; i += THREADS) {
        int at = channel_value_index(i, ch, c, hw);
        partial_gy += gy[at];
        partial_gy_xhat += gy[at] * (x[at] - mu) * inv;
    }
    const real sum_gy = block_sum(partial_gy);
    const real sum_gy_xhat = block_sum(partial_gy_xhat);
    const real scale = weight[ch] * inv / m;
    for (int i = threadIdx.x; i < m; i += THREADS) {
        int at = channel_value_index(i, ch, c, hw);
        gx[at] = scale * (m * gy[at] - sum_gy - (x[at] - mu) * inv * sum_gy_xhat);
    }
    if (threadIdx.x == 0) {
        gweight[ch] = sum_gy_xhat;
        gbias[ch] = sum_gy;
    }
}

extern "C" __global__ void batch_norm_update_running(real* running_mean, real* running_var, const real* mean,
                                                     const real* var, int c, real keep, real momentum, real unbias) {
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    running_mean[ch] = keep * running_mean[ch] + momentum * mean[ch];
    running_var[ch] = keep * running_var[ch] + momentum * (var[ch] * unbias);
}
