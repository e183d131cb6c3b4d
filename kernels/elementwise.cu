// elementwise.cu -- ReLU forward/backward and the fused residual add + ReLU, for CuPy RawModule.
//
// One thread per element i of flat, contiguous arrays of `size` elements: thread i touches index i
// of every array, so each warp reads and writes 32 consecutive values (fully coalesced); with a
// flop or two per value, memory traffic bounds the kernels (their own times are not measured
// apart). Fusing the residual add with the ReLU that follows it (y = max(a + b, 0)) saves writing
// a + b and reading it back: 3 array passes instead of 5.
//
//   relu_forward      y  = x < 0 ? 0 : x        (NaN passes through, as in NumPy and PyTorch)
//   relu_backward     gx = y > 0 ? gy : 0       (the mask is read from the output y, so the
//                                                 input need not be kept; also the backward of
//                                                 add_relu, for both a and b)
//   add_relu_forward  y  = relu(a + b)
//
// `real` is float or double: minires compiles this file once per dtype with -DMINIRES_REAL=...
typedef MINIRES_REAL real;

__device__ __forceinline__ real relu(real v) { return v < real(0) ? real(0) : v; }

extern "C" __global__ void relu_forward(const real* x, real* y, int size) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size) y[i] = relu(x[i]);
}

extern "C" __global__ void relu_backward(const real* gy, const real* y, real* gx, int size) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size) gx[i] = y[i] > real(0) ? gy[i] : real(0);
}

extern "C" __global__ void add_relu_forward(const real* a, const real* b, real* y, int size) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size) y[i] = relu(a[i] + b[i]);
}
