// CPU instruction-set selection (engine/cpu/isa.h).
#include "engine/cpu/isa.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "preimage/error.h"

namespace preimage::cpu {

#define PREIMAGE_DECLARE_ISA(ns)                       \
  namespace ns {                                       \
  extern const WinogradTransforms kWinogradTransforms; \
  }
PREIMAGE_DECLARE_ISA(isa_baseline)
#if defined(PREIMAGE_X86_DISPATCH)
PREIMAGE_DECLARE_ISA(isa_avx2)
PREIMAGE_DECLARE_ISA(isa_avx512)
#endif
#undef PREIMAGE_DECLARE_ISA

namespace {

std::atomic<int> g_forced{-1};  // set_cpu_isa; -1: none

Isa from_env() {
  const char* e = std::getenv("PREIMAGE_CPU_ISA");
  if (!e || !*e) return best_isa();
  const std::string v = e;
  Isa isa;
  if (v == "baseline")
    isa = Isa::Baseline;
  else if (v == "avx2")
    isa = Isa::Avx2;
  else if (v == "avx512")
    isa = Isa::Avx512;
  else
    throw Error("PREIMAGE_CPU_ISA: expected baseline, avx2 or avx512, got '" + v + "'");
  require(isa_supported(isa),
          "PREIMAGE_CPU_ISA=" + v + ": this CPU (or build) cannot run " + v + " code");
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Baseline:
      return "baseline";
    case Isa::Avx2:
      return "avx2";
    case Isa::Avx512:
      return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  if (isa == Isa::Baseline) return true;
#if defined(PREIMAGE_X86_DISPATCH)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == Isa::Avx2) return avx2;
  return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

Isa best_isa() {
  static const Isa best = isa_supported(Isa::Avx512) ? Isa::Avx512
                          : isa_supported(Isa::Avx2) ? Isa::Avx2
                                                     : Isa::Baseline;
  return best;
}

Isa cpu_isa() {
  const int f = g_forced.load(std::memory_order_relaxed);
  if (f >= 0) return Isa(f);
  static const Isa env = from_env();
  return env;
}

void set_cpu_isa(Isa isa) {
  require(isa_supported(isa),
          std::string("set_cpu_isa: this CPU (or build) cannot run ") + isa_name(isa) + " code");
  g_forced.store(int(isa), std::memory_order_relaxed);
}

void reset_cpu_isa() {
  g_forced.store(-1, std::memory_order_relaxed);
}

const WinogradTransforms& winograd_transforms(Isa isa) {
#if defined(PREIMAGE_X86_DISPATCH)
  if (isa == Isa::Avx512) return isa_avx512::kWinogradTransforms;
  if (isa == Isa::Avx2) return isa_avx2::kWinogradTransforms;
#endif
  (void)isa;
  return isa_baseline::kWinogradTransforms;
}

}  // namespace preimage::cpu
