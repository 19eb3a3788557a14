// Errors: every failure the engine reports is a preimage::Error whose text names the file, dataset,
// layer or flag at fault and what was expected. Apps print it on one line and exit non-zero.
#pragma once
#include <stdexcept>
#include <string>

namespace preimage {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws Error(msg) when cond is false; keeps call sites one line.
inline void require(bool cond, const std::string& msg) {
  if (!cond) throw Error(msg);
}

}  // namespace preimage
