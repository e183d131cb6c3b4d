// cuda_host_emulation.hpp -- run minires' CUDA C kernels on the CPU (slowly), to test them without a GPU.
//
// Force-included before a .cu file (g++ -include), it turns the few CUDA features the kernels use
// into C++: every CUDA thread of a block is a host thread (threadIdx is thread_local); blocks run
// one after another, so a __shared__ array can be a function-local static that the block's threads
// share; __syncthreads() is a barrier over the block; __shfl_down_sync(mask, v, d) passes values
// through a per-warp buffer between two barriers over the warp (all 32 lanes must take part, as
// with a full mask on a GPU). A kernel that uses more of CUDA fails to compile here: extend this
// file then, do not change the kernel.
//
// emulate_launch(grid, block, body) runs body() once in every CUDA thread of the grid; the tests
// pass a ctypes callback that calls a kernel of the same library.
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline dim3 blockIdx, blockDim, gridDim;
inline thread_local dim3 threadIdx;

struct Warp {
    std::barrier<> barrier{32};
    unsigned char lanes[32][sizeof(double)];
};
inline std::barrier<>* block_barrier = nullptr;
inline thread_local Warp* my_warp = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

inline void __syncthreads() { block_barrier->arrive_and_wait(); }

template <class T>
T __shfl_down_sync(unsigned /*mask*/, T value, int delta) {
    const unsigned lane = (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32;
    std::memcpy(my_warp->lanes[lane], &value, sizeof(T));
    my_warp->barrier.arrive_and_wait();
    if (lane + delta < 32) std::memcpy(&value, my_warp->lanes[lane + delta], sizeof(T));
    my_warp->barrier.arrive_and_wait();
    return value;
}

extern "C" void emulate_launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                               void (*body)()) {
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, bz};
    const unsigned threads = bx * by * bz;
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                blockIdx = {x, y, z};
                std::barrier<> barrier(threads);
                block_barrier = &barrier;
                std::vector<std::unique_ptr<Warp>> warps;
                for (unsigned w = 0; w * 32 < threads; ++w) warps.push_back(std::make_unique<Warp>());
                std::vector<std::thread> pool;
                for (unsigned t = 0; t < threads; ++t)
                    pool.emplace_back([&, t] {
                        threadIdx = {t % bx, t / bx % by, t / (bx * by)};
                        my_warp = warps[t / 32].get();
                        body();
                    });
                for (auto& thread : pool) thread.join();
            }
}
