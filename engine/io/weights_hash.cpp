#include "engine/io/weights_hash.h"

#include "engine/io/fnv_hash.h"
#include "preimage/error.h"

namespace preimage {

std::string weights_hash(const Weights& w, const std::vector<std::string>& layers,
                         WeightsHashLayout layout, const std::string& prefix,
                         const std::string& what) {
  const bool tagged = layout == WeightsHashLayout::Tagged;
  Fnv f;
  auto add_string = [&](const std::string& s) {
    if (tagged)
      f.add(s);  // with its NUL
    else
      f.add(s.data(), s.size());
  };
  f.add(prefix.data(), prefix.size());
  add_string(w.preprocess.color_order);
  f.add(&w.preprocess.value_range, sizeof(float));
  f.add(w.preprocess.mean, sizeof w.preprocess.mean);
  f.add(w.preprocess.std, sizeof w.preprocess.std);
  for (const std::string& name : layers) {
    auto it = w.layers.find(name);
    require(it != w.layers.end(), what + ": the weights lack layer '" + name + "'");
    add_string(name);
    for (const Tensor* t : {&it->second.weight, &it->second.bias}) {
      if (tagged) {
        const Shape s = t->shape();
        const int dims[4] = {s.n, s.c, s.h, s.w};
        f.add(dims, sizeof dims);
      }
      const std::vector<float> v = t->to_vector();
      f.add(v.data(), v.size() * sizeof(float));
    }
  }
  return hex64(f.h);
}

}  // namespace preimage
