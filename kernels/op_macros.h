// Helpers that turn the entries of kernels/ops.def into declarations and forwarding calls.
// A tag is PLAIN, WS, VER(count) or WS_VER(count) (see ops.def); the macros below paste a prefix
// onto it, so VER(count) becomes PREFIX_VER(count), a macro that drops count.
#pragma once

#define PREIMAGE_OP_CAT(a, b) PREIMAGE_OP_CAT_(a, b)
#define PREIMAGE_OP_CAT_(a, b) a##b
#define PREIMAGE_OP_UNPAREN(...) __VA_ARGS__

// Parameters of the CUDA launcher: (Workspace& ws, …) for WS tags, (…, int version = 0) for VER.
#define PREIMAGE_OP_KPARAMS(tag, params) PREIMAGE_OP_CAT(PREIMAGE_OP_KPARAMS_, tag) params
#define PREIMAGE_OP_KPARAMS_PLAIN(...) (__VA_ARGS__)
#define PREIMAGE_OP_KPARAMS_WS(...) (Workspace & ws, __VA_ARGS__)
#define PREIMAGE_OP_KPARAMS_VER(count) PREIMAGE_OP_KPARAMS_VER_
#define PREIMAGE_OP_KPARAMS_VER_(...) (__VA_ARGS__, int version = 0)
#define PREIMAGE_OP_KPARAMS_WS_VER(count) PREIMAGE_OP_KPARAMS_WS_VER_
#define PREIMAGE_OP_KPARAMS_WS_VER_(...) (Workspace & ws, __VA_ARGS__, int version = 0)

// Arguments of a call to the CUDA launcher: the workspace `ws` first for WS tags (the version is
// left to its default).
#define PREIMAGE_OP_KARGS(tag, ws, args) PREIMAGE_OP_CAT(PREIMAGE_OP_KARGS_, tag)(ws, args)
#define PREIMAGE_OP_KARGS_PLAIN(ws, args) args
#define PREIMAGE_OP_KARGS_VER(count) PREIMAGE_OP_KARGS_PLAIN
#define PREIMAGE_OP_KARGS_WS(ws, args) (ws, PREIMAGE_OP_UNPAREN args)
#define PREIMAGE_OP_KARGS_WS_VER(count) PREIMAGE_OP_KARGS_WS

// The same with an explicit version (the op-generic test): (…, version) for VER tags.
#define PREIMAGE_OP_KARGS_V(tag, ws, args, v) \
  PREIMAGE_OP_CAT(PREIMAGE_OP_KARGS_V_, tag)(ws, args, v)
#define PREIMAGE_OP_KARGS_V_PLAIN(ws, args, v) args
#define PREIMAGE_OP_KARGS_V_WS(ws, args, v) (ws, PREIMAGE_OP_UNPAREN args)
#define PREIMAGE_OP_KARGS_V_VER(count) PREIMAGE_OP_KARGS_V_VER_
#define PREIMAGE_OP_KARGS_V_VER_(ws, args, v) (PREIMAGE_OP_UNPAREN args, v)
#define PREIMAGE_OP_KARGS_V_WS_VER(count) PREIMAGE_OP_KARGS_V_WS_VER_
#define PREIMAGE_OP_KARGS_V_WS_VER_(ws, args, v) (ws, PREIMAGE_OP_UNPAREN args, v)

// Number of kernel versions (0: the launcher takes no version).
#define PREIMAGE_OP_VERSIONS(tag) PREIMAGE_OP_CAT(PREIMAGE_OP_VERSIONS_, tag)
#define PREIMAGE_OP_VERSIONS_PLAIN 0
#define PREIMAGE_OP_VERSIONS_WS 0
#define PREIMAGE_OP_VERSIONS_VER(count) (count)
#define PREIMAGE_OP_VERSIONS_WS_VER(count) (count)
