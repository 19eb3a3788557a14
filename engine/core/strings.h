// Small string helpers shared by the engine and the command line. Engine-private.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace preimage {

// "a,b,c" for {"a", "b", "c"} with sep ","; "" for none.
inline std::string join(const std::vector<std::string>& v, std::string_view sep = ",") {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

}  // namespace preimage
