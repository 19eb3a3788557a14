// Reading HDF5 files from untrusted sources. Debian 12's HDF5 1.10.8 trusts some corrupt metadata
// (variable-length heap IDs, attribute names, metadata sizes) and can crash the process that reads
// a crafted file (docs/reliability.md). With the probe on, every HDF5 file the engine opens for
// reading (weights, checkpoints, indexes, classifiers, decoders, feature files) is first opened
// and walked in a forked child process — every object, every attribute, every dataset (read in
// full up to 64 MiB, else its first and last element), variable-length values included — and
// when that child dies the open throws preimage::Error naming the file, instead of HDF5 crashing
// this process later. Costs one fork and one extra read of the file's metadata per open.
// Off by default in the library (a library should not fork behind its caller's back); the
// preimage command line turns it on.
#pragma once

namespace preimage {

void set_hdf5_probe(bool on);
bool hdf5_probe_enabled();

}  // namespace preimage
