// optim.cu -- the SGD update of minires.optim (PyTorch's rule) fused into one kernel, for CuPy RawModule.
//
// One thread per element i of one parameter (flat, contiguous arrays of `size` elements): thread i
// reads param[i], grad[i] and buffer[i] once and writes param[i] and buffer[i] once, so each warp
// touches 32 consecutive values of every array (fully coalesced); with a few flops per value, memory
// traffic bounds it (its own time is not measured apart). The
// readable definition, `minires.optim.sgd_update`, takes seven array operations (seven launches)
// for the same update with momentum and weight decay:
//
//   d = grad + weight_decay * param                        (when weight_decay != 0)
//   buffer = first_step ? d : momentum * buffer + (1 - dampening) * d      (when momentum != 0)
//   d = nesterov ? d + momentum * buffer : buffer                          (when momentum != 0)
//   param = param - lr * d
//
// Without momentum, `buffer` is never read or written (the launcher passes `param` in its place).
// `real` is float or double: minires compiles this file once per dtype with -DMINIRES_REAL=...
typedef MINIRES_REAL real;

extern "C" __global__ void sgd_update(real* param, const real* grad, real* buffer, int size, real lr,
                                      real momentum, real weight_decay, real dampening, int nesterov,
                                      int first_step) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) return;
    real d = grad[i];
    if (weight_decay != real(0)) d = d + weight_decay * param[i];
    if (momentum != real(0)) {
        real b = first_step ? d : momentum * buffer[i] + (real(1) - dampening) * d;
        buffer[i] = b;
        d = nesterov ? d + momentum * b : b;
    }
    param[i] = param[i] - lr * d;
}
