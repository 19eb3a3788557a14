// A find_package(preimage) consumer using only the recipe API: a 64x64 texture from brick.png.
#include <preimage/image.h>
#include <preimage/recipes.h>
#include <preimage/weights.h>

int main(int argc, char** argv) {
  using namespace preimage;
  Network net(load_weights("random:0", Arch::VGG19), Device::CPU, {.avg_pool = true});
  TextureOptions o;
  o.size = "64";
  o.iterations = 10;
  RecipeResult r = synthesize_texture(net, load_image(argc > 1 ? argv[1] : "brick.png"), o);
  save_png(r.image.view(), argc > 2 ? argv[2] : "texture.png");
  return r.loss.back() < r.loss.front() ? 0 : 1;
}
