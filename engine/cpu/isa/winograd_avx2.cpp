// The Winograd row transforms for the avx2 instruction set (flags: CMakeLists.txt, "CPU
// dispatch"); selected at run time by engine/cpu/isa.cpp.
#define PREIMAGE_ISA_NS isa_avx2
#include "engine/cpu/winograd_transforms.inc"
