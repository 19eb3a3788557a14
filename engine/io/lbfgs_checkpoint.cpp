// L-BFGS checkpoints (docs/lbfgs.md): the solver's full state in one HDF5 file, written
// atomically (temp + rename) and read back with every value checked before anything is committed.
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/core/lbfgs_impl.h"
#include "engine/io/h5_util.h"
#include "preimage/atomic_file.h"
#include "preimage/error.h"
#include "preimage/lbfgs.h"

namespace preimage {

namespace {

std::vector<float> to_host(Backend* be, const float* p, size_t count) {
  std::vector<float> v(count);
  be->copy_to_host(v.data(), p, count);
  return v;
}

}  // namespace

void Lbfgs::Impl::save(const std::string& path, const Tensor& x) const {
  require(x.numel() == n, "L-BFGS checkpoint '" + path + "': x has " + std::to_string(x.numel()) +
                              " elements, expected " + std::to_string(n));
  write_atomically(path, [&](const std::string& tmp) {
    h5::File file = h5::File::create(tmp, "L-BFGS checkpoint '" + path + "'");
    const Shape shp = started ? xshape : x.shape();
    file.write_attr_string("/", "format", kFormat);
    file.write_attr_int64s("/", "version", {kFormatVersion});
    file.write_attr_int64s("/", "n", {int64_t(n)});
    file.write_attr_int64s("/", "x_shape", {shp.n, shp.c, shp.h, shp.w});
    file.write_attr_string("/", "device", device_name(device));

    file.create_group("/options");
    file.write_attr_int64s("/options", "ints",
                           {opt.history, opt.max_iterations, opt.max_evaluations,
                            opt.max_line_search, opt.max_nonfinite, opt.bounded ? 1 : 0});
    file.write_attr_doubles("/options", "doubles",
                            {opt.gtol, opt.ftol, opt.c1, opt.c2, opt.xtol, opt.skip_eps,
                             double(opt.lower), double(opt.upper)});

    file.create_group("/state");
    file.write_attr_int64s("/state", "ints",
                           {started ? 1 : 0, iteration, evaluations, rollbacks, skipped,
                            have_prev ? 1 : 0, after_rollback ? 1 : 0, last_ls_evals, rows, spare});
    file.write_attr_doubles("/state", "doubles",
                            {f, f_prev, pg_inf, pg0_inf, last_step, nonfinite_len});

    const std::vector<float> xv = started ? to_host(be, xk.data(), n) : x.to_vector();
    file.write("/x", xv.data(), {int64_t(n)});
    if (started) {
      const std::vector<float> gv = to_host(be, gk.data(), n);
      file.write("/g", gv.data(), {int64_t(n)});
      std::vector<int64_t> ord(order.begin(), order.end());
      file.write("/history/order", ord.data(), {int64_t(ord.size())});
      if (rows > 0) {
        std::vector<float> buf(size_t(rows) * n);
        for (const auto& [name, mat] : {std::pair{"S", &S}, std::pair{"Y", &Y}}) {
          for (int r = 0; r < rows; ++r)
            be->copy_to_host(buf.data() + size_t(r) * n, mat->data() + size_t(r) * ld, n);
          file.write(std::string("/history/") + name, buf.data(), {rows, int64_t(n)});
        }
      }
      const int64_t M = m1();
      file.write("/history/sy", sy.data(), {M, M});
      file.write("/history/yy", yy.data(), {M, M});
      file.write("/history/pgs", pgs.data(), {M});
      file.write("/history/pgy", pgy.data(), {M});

      file.create_group("/line_search");
      file.write_attr_doubles("/line_search", "doubles",
                              {ls.ftol, ls.gtol, ls.xtol, ls.stpmin, ls.stpmax, ls.ginit, ls.gtest,
                               ls.gx, ls.gy, ls.finit, ls.fx, ls.fy, ls.stx, ls.sty, ls.stmin,
                               ls.stmax, ls.width, ls.width1, ls.stp});
      file.write_attr_int64s("/line_search", "ints",
                             {ls.brackt ? 1 : 0, ls.stage, int64_t(ls.task)});
    }
    if (!blob.empty()) {
      std::vector<int64_t> bytes(blob.size());
      for (size_t i = 0; i < blob.size(); ++i) bytes[i] = static_cast<unsigned char>(blob[i]);
      file.write("/user_blob", bytes.data(), {int64_t(bytes.size())});
    }
    file.close();
  });
}

void Lbfgs::Impl::load(const std::string& path, Tensor& x) {
  h5::File file = h5::File::open(path, "L-BFGS checkpoint '" + path + "'");
  if (!file.has_attr("/", "format") || file.read_attr_string("/", "format") != kFormat)
    file.fail("not an L-BFGS checkpoint (attribute /format is not '" + std::string(kFormat) + "')");
  const auto version = file.read_attr_int64s("/", "version");
  if (version.size() != 1 || version[0] != kFormatVersion)
    file.fail("unsupported checkpoint version (expected " + std::to_string(kFormatVersion) + ")");
  const auto nn = file.read_attr_int64s("/", "n");
  if (nn.size() != 1 || size_t(nn[0]) != n)
    file.fail("checkpoint is for n = " + (nn.empty() ? std::string("?") : std::to_string(nn[0])) +
              ", this solver has n = " + std::to_string(n));
  const auto shp = file.read_attr_int64s("/", "x_shape");
  if (shp.size() != 4) file.fail("attribute /x_shape must have 4 values");
  const Shape saved_shape{int(shp[0]), int(shp[1]), int(shp[2]), int(shp[3])};
  if (saved_shape.numel() != n) file.fail("attribute /x_shape does not match n");

  const auto oi = file.read_attr_int64s("/options", "ints");
  const auto od = file.read_attr_doubles("/options", "doubles");
  if (oi.size() != 6 || od.size() != 8) file.fail("/options has the wrong number of values");
  LbfgsOptions o;
  o.history = int(oi[0]);
  o.max_iterations = int(oi[1]);
  o.max_evaluations = int(oi[2]);
  o.max_line_search = int(oi[3]);
  o.max_nonfinite = int(oi[4]);
  o.bounded = oi[5] != 0;
  o.gtol = od[0];
  o.ftol = od[1];
  o.c1 = od[2];
  o.c2 = od[3];
  o.xtol = od[4];
  o.skip_eps = od[5];
  o.lower = float(od[6]);
  o.upper = float(od[7]);
  if (o.history != opt.history)
    file.fail("checkpoint has history " + std::to_string(o.history) + ", this solver " +
              std::to_string(opt.history));
  try {
    check_options(o);
  } catch (const Error& e) {
    file.fail(std::string("bad options: ") + e.what());
  }

  const auto si = file.read_attr_int64s("/state", "ints");
  const auto sd = file.read_attr_doubles("/state", "doubles");
  if (si.size() != 10 || sd.size() != 6) file.fail("/state has the wrong number of values");
  const bool st = si[0] != 0;
  const int M = o.history + 1;
  std::vector<float> xv(n), gv;
  file.check_dataset("/x", h5::Kind::Float, {int64_t(n)}, "float32");
  file.read("/x", xv.data(), n);
  std::vector<int64_t> ord;
  std::vector<float> sbuf, ybuf;
  std::vector<double> sy2, yy2, pgs2, pgy2;
  const int rows2 = int(si[8]), spare2 = int(si[9]);
  if (st) {
    gv.resize(n);
    file.check_dataset("/g", h5::Kind::Float, {int64_t(n)}, "float32");
    file.read("/g", gv.data(), n);
    if (rows2 < 0 || rows2 > M || spare2 < -1 || spare2 >= std::max(rows2, 1))
      file.fail("/state rows/spare out of range");
    ord = file.read_vector<int64_t>("/history/order");
    if (int(ord.size()) > o.history) file.fail("/history/order is longer than the history");
    for (int64_t r : ord)
      if (r < 0 || r >= rows2 || r == spare2) file.fail("/history/order names a bad row");
    if (rows2 > 0) {
      for (auto [name, buf] : {std::pair{"/history/S", &sbuf}, std::pair{"/history/Y", &ybuf}}) {
        file.check_dataset(name, h5::Kind::Float, {rows2, int64_t(n)}, "float32");
        buf->resize(size_t(rows2) * n);
        file.read(name, buf->data(), buf->size());
      }
    }
    for (auto [name, vec, cnt] :
         {std::tuple{"/history/sy", &sy2, M * M}, std::tuple{"/history/yy", &yy2, M * M},
          std::tuple{"/history/pgs", &pgs2, M}, std::tuple{"/history/pgy", &pgy2, M}}) {
      file.check_dataset(name, h5::Kind::Float, cnt == M ? h5::Dims{M} : h5::Dims{M, M}, "float64");
      vec->resize(size_t(cnt));
      file.read(name, vec->data(), vec->size());
    }
  }
  MoreThuente ls2;
  if (st) {
    const auto ld_ = file.read_attr_doubles("/line_search", "doubles");
    const auto li = file.read_attr_int64s("/line_search", "ints");
    if (ld_.size() != 19 || li.size() != 3)
      file.fail("/line_search has the wrong number of values");
    double* fields[] = {&ls2.ftol,  &ls2.gtol,  &ls2.xtol,   &ls2.stpmin, &ls2.stpmax,
                        &ls2.ginit, &ls2.gtest, &ls2.gx,     &ls2.gy,     &ls2.finit,
                        &ls2.fx,    &ls2.fy,    &ls2.stx,    &ls2.sty,    &ls2.stmin,
                        &ls2.stmax, &ls2.width, &ls2.width1, &ls2.stp};
    for (size_t i = 0; i < 19; ++i) *fields[i] = ld_[i];
    ls2.brackt = li[0] != 0;
    ls2.stage = int(li[1]);
    ls2.task = LineSearchTask(li[2]);
  }
  std::string blob2;
  if (file.exists("/user_blob")) {
    const auto bytes = file.read_vector<int64_t>("/user_blob");
    blob2.resize(bytes.size());
    for (size_t i = 0; i < bytes.size(); ++i) blob2[i] = char(static_cast<unsigned char>(bytes[i]));
  }

  // Everything read and checked: commit.
  file.close();
  opt = o;
  started = st;
  xshape = saved_shape;
  iteration = int(si[1]);
  evaluations = int(si[2]);
  rollbacks = int(si[3]);
  skipped = int(si[4]);
  have_prev = si[5] != 0;
  after_rollback = si[6] != 0;
  last_ls_evals = int(si[7]);
  f = sd[0];
  f_prev = sd[1];
  pg_inf = sd[2];
  pg0_inf = sd[3];
  last_step = sd[4];
  nonfinite_len = sd[5];
  blob = std::move(blob2);
  reset_history();
  be->copy_from_host(xk.data(), xv.data(), n);
  if (st) {
    be->copy_from_host(gk.data(), gv.data(), n);
    rows = rows2;
    spare = spare2;
    order.assign(ord.begin(), ord.end());
    for (int r = 0; r < rows; ++r) {
      be->copy_from_host(row_s(r), sbuf.data() + size_t(r) * n, n);
      be->copy_from_host(row_y(r), ybuf.data() + size_t(r) * n, n);
    }
    sy = std::move(sy2);
    yy = std::move(yy2);
    pgs = std::move(pgs2);
    pgy = std::move(pgy2);
    ls = ls2;
    // pg is an element-wise function of (x, g): recomputing it gives the same bits.
    double o3[3];
    be->lbfgs_project_grad(xk.data(), gk.data(), opt.lower, opt.upper, opt.bounded, pg.data(), n,
                           o3);
  }
  if (x.empty()) x = Tensor(saved_shape, device);
  require(x.numel() == n, "L-BFGS checkpoint '" + path + "': x has " + std::to_string(x.numel()) +
                              " elements, expected " + std::to_string(n));
  x.copy_from(View{xk.data(), x.shape(), device});
}

void Lbfgs::save_checkpoint(const std::string& path, const Tensor& x) const {
  impl_->save(path, x);
}

void Lbfgs::load_checkpoint(const std::string& path, Tensor& x) {
  impl_->load(path, x);
}

}  // namespace preimage
