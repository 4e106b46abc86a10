#include "vidkv/experiments/python/python_quantizer.h"

#include <pybind11/numpy.h>

#include <cstring>
#include <filesystem>
#include <memory>

#include "vidkv/core/dynamic_params.h"
#include "vidkv/core/error.h"
#include "vidkv/core/quantizer.h"

namespace py = pybind11;

namespace vidkv {

namespace {

// The GIL of the calling thread, with the C API (independent of which pybind11 copy, the vidkv executable's or
// this extension's, started the interpreter): the runner calls plugins from its worker threads.
struct Gil {
  PyGILState_STATE state = PyGILState_Ensure();
  Gil() = default;
  Gil(const Gil&) = delete;
  ~Gil() { PyGILState_Release(state); }
};

// A Python object owned from C++: released under the GIL, or leaked once the interpreter is finalizing (static
// registries outlive it).
std::shared_ptr<py::object> hold(py::object o) {
  return std::shared_ptr<py::object>(new py::object(std::move(o)), [](py::object* p) {
#if PY_VERSION_HEX >= 0x030D0000
    const bool finalizing = Py_IsFinalizing();
#else
    const bool finalizing = _Py_IsFinalizing();
#endif
    if (Py_IsInitialized() && !finalizing) {
      Gil gil;
      delete p;
    } else {
      p->release();
      delete p;
    }
  });
}

std::string python_error_text(py::error_already_set& e) { return e.what(); }

SectionKind section_kind(const std::string& kind, const std::string& plugin) {
  for (SectionKind k : {SectionKind::codes, SectionKind::scales, SectionKind::zero_points, SectionKind::channel_mask,
                        SectionKind::token_mask, SectionKind::residual, SectionKind::header})
    if (kind == section_kind_name(k)) return k;
  VIDKV_THROW(Error, "python quantizer ", plugin, ": layout() section kind '", kind,
              "' is not one of codes, scales, zero_points, channel_mask, token_mask, residual, header");
}

class PythonQuantizer : public Quantizer {
 public:
  PythonQuantizer(std::shared_ptr<py::object> instance, const std::string& name) : instance_(std::move(instance)) {
    set_plugin_name(name);
  }

  PackedLayout layout(const BlockShape& shape, const TokenContext&) const override {
    std::string error;
    {
      Gil gil;
      try {
        return layout_locked(shape);
      } catch (py::error_already_set& e) {
        error = python_error_text(e);
      } catch (const py::cast_error& e) {
        error = std::string("layout() must return (nominal_bits, [(name, kind, bytes), ...]): ") + e.what();
      }
    }
    VIDKV_THROW(Error, "python quantizer ", plugin_name(), ": ", error);
  }

  void encode(const float* in, const BlockShape& shape, const TokenContext&, std::uint8_t* out) const override {
    std::string error;
    {
      Gil gil;
      try {
        const std::size_t bytes = layout_locked(shape).bytes();
        py::array_t<float> x({shape.heads, shape.tokens, shape.channels});
        std::memcpy(x.mutable_data(), in, std::size_t(shape.elements()) * sizeof(float));
        const py::object r = instance_->attr("encode")(x);
        const py::buffer_info b = py::buffer(r).request();
        const std::size_t got = std::size_t(b.size * b.itemsize);
        if (got != bytes) {
          error = "encode() returned " + std::to_string(got) + " bytes, layout() says " + std::to_string(bytes) +
                  " for shape " + shape.str();
        } else {
          std::memcpy(out, b.ptr, bytes);
          return;
        }
      } catch (py::error_already_set& e) {
        error = python_error_text(e);
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    VIDKV_THROW(Error, "python quantizer ", plugin_name(), ": ", error);
  }

  void decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, float* out) const override {
    std::string error;
    {
      Gil gil;
      try {
        const std::size_t bytes = layout_locked(shape).bytes();
        const py::bytes data(reinterpret_cast<const char*>(in), bytes);
        const py::object r = instance_->attr("decode")(data, py::make_tuple(shape.heads, shape.tokens, shape.channels));
        const auto y = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(r);
        if (!y) {
          error = "decode() must return a float32 array";
        } else if (std::int64_t(y.size()) != shape.elements()) {
          error = "decode() returned " + std::to_string(y.size()) + " values for shape " + shape.str();
        } else {
          std::memcpy(out, y.data(), std::size_t(shape.elements()) * sizeof(float));
          return;
        }
      } catch (py::error_already_set& e) {
        error = python_error_text(e);
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    VIDKV_THROW(Error, "python quantizer ", plugin_name(), ": ", error);
  }

 private:
  PackedLayout layout_locked(const BlockShape& shape) const {
    const py::tuple r = instance_->attr("layout")(py::make_tuple(shape.heads, shape.tokens, shape.channels));
    if (r.size() != 2) throw py::cast_error("a tuple of 2");
    PackedLayout l(shape.elements(), r[0].cast<double>());
    for (const auto& s : r[1].cast<py::list>()) {
      const py::tuple t = s.cast<py::tuple>();
      l.add(t[0].cast<std::string>(), section_kind(t[1].cast<std::string>(), plugin_name()), t[2].cast<std::size_t>());
    }
    return l;
  }

  std::shared_ptr<py::object> instance_;
};

// The ParamSpecs of the class's `params` dict.
std::vector<ParamSpec> param_specs(const py::object& cls, const std::string& name) {
  std::vector<ParamSpec> out;
  if (!py::hasattr(cls, "params")) return out;
  const py::object params = cls.attr("params");
  if (!py::isinstance<py::dict>(params)) VIDKV_THROW(ConfigError, "python quantizer ", name, ": params must be a dict");
  for (const auto& [k, v] : params.cast<py::dict>()) {
    ParamSpec s;
    s.name = py::str(k);
    const std::string where = "python quantizer " + name + ": params['" + s.name + "']";
    if (!py::isinstance<py::dict>(v)) VIDKV_THROW(ConfigError, where, " must be a dict with 'default'");
    const py::dict d = v.cast<py::dict>();
    if (!d.contains("default")) VIDKV_THROW(ConfigError, where, " has no 'default'");
    const py::object def = d["default"];
    s.description = d.contains("description") ? py::str(d["description"]).cast<std::string>() : "";
    s.unit = d.contains("unit") ? py::str(d["unit"]).cast<std::string>() : "";
    if (py::isinstance<py::bool_>(def)) {
      s.type = ParamType::boolean;
      s.default_text = def.cast<bool>() ? "true" : "false";
      s.max = 1;
    } else if (py::isinstance<py::int_>(def) || py::isinstance<py::float_>(def)) {
      const bool integer = py::isinstance<py::int_>(def);
      s.type = integer ? ParamType::integer : ParamType::real;
      s.default_text = integer ? std::to_string(def.cast<long long>()) : format_number(def.cast<double>());
      s.min = d.contains("min") ? d["min"].cast<double>() : -1e300;
      s.max = d.contains("max") ? d["max"].cast<double>() : 1e300;
    } else if (py::isinstance<py::str>(def) && d.contains("choices")) {
      s.type = ParamType::choice;
      s.default_text = def.cast<std::string>();
      for (const auto& c : d["choices"]) s.choices.push_back(py::str(c));
    } else {
      VIDKV_THROW(ConfigError, where, ": the default must be a bool, an int, a float, or a str with 'choices'");
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

void register_python_quantizer(PluginRegistry& registry, const py::object& cls, const std::string& origin) {
  if (!py::hasattr(cls, "name")) VIDKV_THROW(ConfigError, "python plugin ", py::repr(cls).cast<std::string>(), " has no `name`");
  const std::string name = py::str(cls.attr("name"));
  for (const char* m : {"layout", "encode", "decode"})
    if (!py::hasattr(cls, m)) VIDKV_THROW(ConfigError, "python quantizer ", name, " has no method ", m, "()");
  PluginInfo info;
  info.name = name;
  info.family = PluginFamily::quantizer;
  info.summary = py::hasattr(cls, "summary") ? py::str(cls.attr("summary")).cast<std::string>() : "";
  info.params = param_specs(cls, name);
  info.origin = origin;
  auto klass = hold(cls);
  const std::vector<ParamSpec> specs = info.params;
  registry.add_quantizer(std::move(info), [klass, specs, name](const ConfigNode& block, const PluginRegistry&) {
    const auto values = parse_dynamic_params(block, specs, {kPluginTypeKey}, name);
    std::string error;
    {
      Gil gil;
      try {
        py::dict kwargs;
        for (const auto& [k, v] : values) {
          switch (v.type) {
            case ParamType::integer: kwargs[py::str(k)] = py::int_(v.integer); break;
            case ParamType::real: kwargs[py::str(k)] = py::float_(v.real); break;
            case ParamType::boolean: kwargs[py::str(k)] = py::bool_(v.boolean); break;
            default: kwargs[py::str(k)] = py::str(v.text); break;
          }
        }
        return std::unique_ptr<Quantizer>(std::make_unique<PythonQuantizer>(hold((*klass)(**kwargs)), name));
      } catch (py::error_already_set& e) {
        error = python_error_text(e);
      }
    }
    block.fail("python quantizer " + name + " refused its parameters: " + error);
  });
}

int register_python_plugin_file(PluginRegistry& registry, const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) VIDKV_THROW(ConfigError, "python plugin '", path, "': no such file");
  const std::string canonical = std::filesystem::canonical(path, ec).string();
  for (const auto& info : registry.list())
    if (info.origin == canonical) return 0;  // loaded before
  const py::module_ util = py::module_::import("importlib.util");
  const std::string module_name = "vidkv_plugin_" + std::filesystem::path(canonical).stem().string();
  py::object spec = util.attr("spec_from_file_location")(module_name, canonical);
  py::object module = util.attr("module_from_spec")(spec);
  py::module_::import("sys").attr("modules")[py::str(module_name)] = module;
  spec.attr("loader").attr("exec_module")(module);
  if (!py::hasattr(module, "VIDKV_PLUGINS"))
    VIDKV_THROW(ConfigError, "python plugin '", path, "' has no VIDKV_PLUGINS = [Class, ...] list");
  // All or nothing, as for libraries.
  PluginRegistry grown = registry;
  int n = 0;
  for (const auto& cls : module.attr("VIDKV_PLUGINS")) {
    register_python_quantizer(grown, py::reinterpret_borrow<py::object>(cls), canonical);
    ++n;
  }
  registry = std::move(grown);
  return n;
}

}  // namespace vidkv
