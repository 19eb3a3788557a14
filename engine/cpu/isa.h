// Runtime instruction-set dispatch of the CPU backend's own hot loops (the Winograd transforms;
// GEMMs go to OpenBLAS, which dispatches by itself). The library is compiled for the x86-64
// baseline (PREIMAGE_NATIVE=OFF, the default); the dispatched loops are compiled three times
// (engine/cpu/isa/: baseline, AVX2+FMA, AVX-512 with 512-bit vectors) and the best one the CPU
// supports is taken at first use. PREIMAGE_CPU_ISA=baseline|avx2|avx512 forces one (an Error
// names a value the CPU cannot run), set_cpu_isa overrides it (tests run every path).
#pragma once
#include <cstddef>

namespace preimage::cpu {

enum class Isa { Baseline, Avx2, Avx512 };
const char* isa_name(Isa isa);
bool isa_supported(Isa isa);  // by this CPU (and this build: non-x86 builds have only Baseline)
Isa best_isa();               // the widest supported
Isa cpu_isa();                // in use: PREIMAGE_CPU_ISA, else best_isa(), unless set_cpu_isa
void set_cpu_isa(Isa isa);    // throws Error when !isa_supported(isa)
void reset_cpu_isa();         // back to the environment's / the best choice

// The Winograd F(4×4,3×3) row transforms (engine/cpu/winograd_transforms.inc), one table per ISA.
struct WinogradTransforms {
  void (*input_tile_row)(const float* x, int h, int w, int ty, int tw, float* v, size_t xi_stride);
  void (*output_tile_row)(const float* m, size_t xi_stride, int h, int w, int ty, int tw, float* y,
                          float bias, bool relu, const float* mask);
};
const WinogradTransforms& winograd_transforms(Isa isa);

}  // namespace preimage::cpu
