#include "vidkv/experiments/src/experiment_plan.h"

#include <glob.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>

#include "vidkv/core/error.h"
#include "vidkv/core/name_list.h"
#include "vidkv/core/params.h"
#include "vidkv/experiments/src/cuda_replay.h"
#include "vidkv/experiments/src/presets.h"
#include "vidkv/experiments/src/yaml_config.h"

namespace fs = std::filesystem;

namespace vidkv {

const std::vector<std::string>& all_metric_names() {
  static const std::vector<std::string> names = {
      "key_rel_error", "value_rel_error", "key_mse", "value_mse", "key_snr_db", "value_snr_db", "key_cosine",
      "value_cosine", "attn_logit_rel_error", "attn_kl", "attn_topk_overlap", "attn_out_rel_error",
      "attn_out_rel_error_key_only", "attn_out_rel_error_value_only", "decode_attn_out_rel_error",
      "decode_attn_out_rel_value", "decode_attn_out_mse", "decode_attn_kl", "decode_attn_out_depth_error", "key_nominal_bits", "value_nominal_bits",
      "key_effective_bits", "value_effective_bits", "nominal_bits", "effective_bits", "compression_ratio", "seconds"};
  return names;
}

namespace {

const std::vector<std::string> kTopLevelKeys = {"name", "description", "traces", "model", "backend", "seed", "codec",
                                                "lifecycle", "sweep", "metrics", "output", "plugins"};

// A block that names a plugin (or a lifecycle) with `type: NAME`.
bool names_plugin(const ConfigNode& n, std::string* value) {
  if (!n.is_map()) return false;
  if (const ConfigNode* v = n.find(kPluginTypeKey); v && v->is_scalar()) {
    *value = v->text();
    return true;
  }
  return false;
}

void check_keys(const ConfigNode& node, const std::vector<std::string>& valid, const std::string& what) {
  for (const auto& [key, value] : node.entries()) {
    if (std::find(valid.begin(), valid.end(), key) != valid.end()) continue;
    value.fail_at_key("unknown key '" + key + "' in " + what + did_you_mean(key, valid) + "; valid keys: " + join_names(valid));
  }
}

std::vector<std::string> expand_traces(const ConfigNode& traces, const std::string& source_file) {
  std::vector<const ConfigNode*> patterns;
  if (traces.is_scalar()) {
    patterns.push_back(&traces);
  } else if (traces.is_list()) {
    if (traces.items().empty()) traces.fail("the list is empty; name at least one trace file or glob");
    for (const auto& t : traces.items()) patterns.push_back(&t);
  } else {
    traces.fail("expected a trace path, a glob, or a list of them");
  }
  std::vector<fs::path> bases = {fs::current_path()};
  if (!source_file.empty()) bases.push_back(fs::absolute(source_file).parent_path());
#ifdef VIDKV_SOURCE_DIR
  bases.push_back(VIDKV_SOURCE_DIR);
#endif
  std::vector<std::string> out;
  for (const ConfigNode* p : patterns) {
    const std::string pattern = p->text();
    std::vector<std::string> found;
    for (const auto& base : bases) {
      const fs::path full = fs::path(pattern).is_absolute() ? fs::path(pattern) : base / pattern;
      glob_t g{};
      if (::glob(full.c_str(), 0, nullptr, &g) == 0) {
        for (std::size_t i = 0; i < g.gl_pathc; ++i) found.push_back(fs::path(g.gl_pathv[i]).lexically_normal().string());
      }
      globfree(&g);
      if (!found.empty()) break;
    }
    if (found.empty()) p->fail("no trace matches '" + pattern + "' (relative paths are tried from the current directory, the experiment file's folder and the VidKV source tree)");
    for (auto& f : found) {
      if (fs::path(f).is_relative() || true) {
        // Show paths relative to the current directory when they are below it (stable, readable result rows).
        std::error_code ec;
        const fs::path rel = fs::relative(f, fs::current_path(), ec);
        if (!ec && !rel.empty() && rel.native().rfind("..", 0) != 0) f = rel.string();
      }
      out.push_back(f);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void apply_assignment(ConfigNode& doc, const std::string& path, const ConfigNode& value, const PluginRegistry& registry) {
  if (path.find('.') == std::string::npos) {
    ConfigNode* existing = doc.find(path);
    if (existing && existing->is_map() && value.is_map()) {
      merge_config(*existing, value, registry);
      return;
    }
  } else if (const ConfigNode* existing = doc.find_path(path); existing && existing->is_map() && value.is_map()) {
    ConfigNode merged = *existing;
    merge_config(merged, value, registry);
    doc.set_path_value(path, merged);
    return;
  }
  doc.set_path_value(path, value);
}

std::string strip_codec_prefix(const std::string& path) { return path.rfind("codec.", 0) == 0 ? path.substr(6) : path; }

struct Assignment {
  std::string path;
  ConfigNode value;
};
struct Variant {
  std::string name;
  std::vector<Assignment> assignments;
};

// Largest sweep: runs of one experiment, and run x trace cells (each cell keeps a file and a result row set).
constexpr std::size_t kMaxRuns = 10000;
constexpr std::size_t kMaxCells = 100000;

std::vector<Variant> expand_sweep(const ConfigNode* sweep) {
  if (!sweep || sweep->is_null()) return {Variant{}};
  std::vector<Variant> out;
  if (sweep->is_map()) {
    // The product of the list sizes, checked before anything is expanded.
    std::size_t runs = 1;
    std::string product;
    for (const auto& [path, values] : sweep->entries()) {
      if (!values.is_list() || values.items().empty()) values.fail("a sweep entry needs a non-empty list of values");
      std::set<std::string> distinct;
      for (const auto& value : values.items())
        if (!distinct.insert(value.dump()).second)
          value.fail("sweep: " + path + " lists " + value.dump() + " twice; two runs would be the same (and share a name)");
      runs = std::min(runs * values.items().size(), kMaxRuns + 1);
      product += (product.empty() ? "" : " x ") + std::to_string(values.items().size());
      if (runs > kMaxRuns)
        sweep->fail("sweep: the lists multiply to more than " + std::to_string(kMaxRuns) + " runs (" + product +
                    " ...); split the experiment into several files");
    }
    out.push_back(Variant{});
    for (const auto& [path, values] : sweep->entries()) {
      std::vector<Variant> next;
      for (const auto& v : out) {
        for (const auto& value : values.items()) {
          Variant w = v;
          w.assignments.push_back({path, value});
          w.name += (w.name.empty() ? "" : ",") + strip_codec_prefix(path) + "=" + value.dump();
          next.push_back(std::move(w));
        }
      }
      out = std::move(next);
    }
    return out;
  }
  if (!sweep->is_list()) sweep->fail("sweep: expected a map of dotted paths to value lists, or a list of named variants");
  if (sweep->items().empty())
    sweep->fail("sweep: an empty list gives no runs; leave 'sweep' out for one run of the file's settings");
  if (sweep->items().size() > kMaxRuns)
    sweep->fail("sweep: " + std::to_string(sweep->items().size()) + " variants, more than " + std::to_string(kMaxRuns) +
                " runs; split the experiment into several files");
  std::set<std::string> seen;
  for (const auto& item : sweep->items()) {
    if (!item.is_map()) item.fail("a sweep variant is a map {name: NAME, dotted.path: value, ...}");
    const ConfigNode* name = item.find("name");
    if (!name) item.fail("a sweep variant needs a 'name'");
    Variant v{name->text(), {}};
    if (!seen.insert(v.name).second) name->fail("duplicate variant name '" + v.name + "'");
    for (const auto& [path, value] : item.entries())
      if (path != "name") v.assignments.push_back({path, value});
    out.push_back(std::move(v));
  }
  return out;
}

ConfigNode defaults_document() {
  ConfigNode d = ConfigNode::map({"<defaults>", 0, 0});
  auto s = [](const char* t) { return ConfigNode::scalar(t, {"<defaults>", 0, 0}); };
  d.set("backend", s("cpu"));
  d.set("seed", s("0"));
  ConfigNode lc = ConfigNode::map({"<defaults>", 0, 0});
  lc.set("type", s("paper"));
  lc.set("group", s("32"));
  lc.set("residual", s("128"));
  d.set("lifecycle", lc);
  ConfigNode m = ConfigNode::list({"<defaults>", 0, 0});
  m.push_back(s("all"));
  d.set("metrics", m);
  d.set("output", s("results/{name}"));
  return d;
}

// The KIVI lifecycle encodes the values that leave its window of R tokens as blocks of value_block B tokens (ONE
// token by default; algorithms.md section 5; KIVI's values are per-token, so a 1-token block holds whole groups). A
// value codec whose groups run along the token axis (per-channel values: axis channel) then holds B tokens per group
// and, at B = 1, stores a scale and a min per element (about 34 bits per element at 2 bits). Measured from the
// layouts, so composites are covered: refused when B-token blocks cost more than 1 bit per element above blocks of
// max(128, B) tokens (head_dim 128). value_block other than 1 under another lifecycle type is refused, naming its line.
void check_kivi_value_blocks(const RunPlan& run, const PluginRegistry& registry) {
  if (run.lifecycle.type != LifecycleType::kivi) {
    if (run.lifecycle.value_block != 1) {
      const ConfigNode* b = run.lifecycle_node.find("value_block");
      (b ? *b : run.lifecycle_node)
          .fail("run '" + run.name + "': lifecycle value_block " + std::to_string(run.lifecycle.value_block) +
                " applies to type kivi only (paper and release quantize both sides in R-blocks); remove it or set "
                "type: kivi");
    }
    return;
  }
  const std::int64_t block = run.lifecycle.value_block;
  const auto q = registry.make_quantizer(run.codec.at("value"));
  double one = 0, wide = 0;
  try {
    one = q->layout(BlockShape{1, block, 128}, TokenContext{}).effective_bits();
    wide = q->layout(BlockShape{1, std::max<std::int64_t>(128, block), 128}, TokenContext{}).effective_bits();
  } catch (const Error&) {
    return;  // a codec made for another head_dim (an exact channel count above 128): nothing measured here
  }
  if (one <= wide + 1.0) return;
  char bits[96];
  std::snprintf(bits, sizeof bits, "%.2f bits per element on them (%.2f on %d-token blocks)", one, wide,
                static_cast<int>(std::max<std::int64_t>(128, block)));
  const std::string blocks = block == 1 ? std::string("a block of one token") : "blocks of " + std::to_string(block) + " tokens";
  const ConfigNode* type = run.lifecycle_node.find("type");
  (type ? *type : run.lifecycle_node)
      .fail("run '" + run.name + "': lifecycle type kivi encodes the values leaving its window as " + blocks +
            " (value_block), and this value codec stores " + bits + ": its groups run along the token axis "
            "(per-channel values), so each group holds " + (block == 1 ? std::string("one token") : "only " + std::to_string(block) + " tokens") +
            ". Use per-token values (value axis: token, as KIVI does), a larger value_block, or lifecycle type paper "
            "or release");
}

}  // namespace

const std::vector<std::string>& all_live_metric_names() {
  static const std::vector<std::string> names = {"perplexity", "perplexity_reference", "next_token_kl", "greedy_agreement",
                                                 "key_nominal_bits", "value_nominal_bits", "key_effective_bits",
                                                 "value_effective_bits", "nominal_bits", "effective_bits",
                                                 "compression_ratio", "seconds"};
  return names;
}

namespace {

// The parameter specs a block `type: name` of `family` declares; with the family unknown (a block reached from the
// document's top), those of every family that has a plugin of that name.
std::vector<const ParamSpec*> plugin_params(const PluginRegistry& registry, std::optional<PluginFamily> family,
                                            const std::string& name) {
  std::vector<const ParamSpec*> out;
  for (PluginFamily f : {PluginFamily::quantizer, PluginFamily::channel_selector, PluginFamily::token_protector}) {
    if (family && *family != f) continue;
    if (const PluginInfo* info = registry.find(f, name))
      for (const auto& p : info->params) out.push_back(&p);
  }
  return out;
}

void merge_plugin_config(ConfigNode& base, const ConfigNode& overlay, const PluginRegistry& registry,
                         std::optional<PluginFamily> family) {
  if (!base.is_map() || !overlay.is_map()) {
    const std::string path = base.path();
    base = overlay;
    base.set_path(path);
    return;
  }
  std::string bv, ov;
  const bool base_names = names_plugin(base, &bv);
  if (base_names && names_plugin(overlay, &ov) && bv != ov) {
    // Another plugin: only the parameters the new plugin also declares (e.g. a selector's fraction and scope)
    // are inherited; the rest belonged to the old plugin and would be unknown keys.
    const std::string path = base.path();
    ConfigNode merged = overlay;
    const auto params = plugin_params(registry, family, ov);
    for (const auto& [key, value] : base.entries()) {
      if (merged.has(key) || key == kPluginTypeKey) continue;
      for (const ParamSpec* p : params)
        if (p->name == key) merged.set(key, value);
    }
    base = merged;
    base.set_path(path);
    return;
  }
  const auto params = base_names ? plugin_params(registry, family, bv) : std::vector<const ParamSpec*>{};
  for (const auto& [key, value] : overlay.entries()) {
    ConfigNode* mine = base.find(key);
    if (mine) {
      // A nested plugin block (a composite's child) belongs to the family its parameter declares.
      std::optional<PluginFamily> child;
      for (const ParamSpec* p : params)
        if (p->name == key && p->type == ParamType::block) child = plugin_family_from_name(p->block_family);
      merge_plugin_config(*mine, value, registry, child);
    } else {
      base.set(key, value);
    }
  }
}

}  // namespace

void merge_config(ConfigNode& base, const ConfigNode& overlay, const PluginRegistry& registry) {
  merge_plugin_config(base, overlay, registry, std::nullopt);
}

bool protects_visual_tokens(const ConfigNode& codec) {
  if (!codec.is_map()) return false;
  if (const ConfigNode* p = codec.find("protector"); p && p->is_map()) {
    const ConfigNode* c = p->find("candidates");
    const ConfigNode* type = p->find("type");
    const bool protects = !(type && type->is_scalar() && type->text() == "none");  // `none`: budget 0 anyway
    if (protects && (!c || (c->is_scalar() && c->text() == "visual"))) return true;
  }
  for (const auto& [key, child] : codec.entries())
    if (child.is_map() && protects_visual_tokens(child)) return true;
  return false;
}

namespace {

// The scalar values under `node` as "FILE:LINE:COL path = value", in file order.
void collect_settings(const ConfigNode& node, std::vector<std::string>& out) {
  if (node.is_map()) {
    for (const auto& [key, value] : node.entries()) collect_settings(value, out);
  } else if (node.is_scalar()) {
    out.push_back(node.location().str() + " " + node.path() + " = " + node.text());
  }
}

// Builds one side of a preset after the user's overrides merged into it (`merged`, from resolve_codec). A refusal
// that names the preset file's line (kivi-2-fragment's `layout: fragment` refusing a user's `bits: 3`) would point
// away from its cause, so the message then also lists the user's settings of that block (`user`: the codec's key or
// value block as the user wrote it, a sweep entry or --set set it). Refusals located anywhere else (the user's own
// line, a --set) pass as they are. `preset_file`: the preset's path as its nodes' locations name it. Throws ConfigError.
void validate_preset_override(const PluginRegistry& registry, const ConfigNode& merged, const ConfigNode& user,
                              const std::string& preset, const std::string& preset_file) {
  try {
    registry.validate(PluginFamily::quantizer, merged);
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    if (preset_file.empty() || message.rfind(preset_file + ":", 0) != 0) throw;
    std::vector<std::string> settings;
    collect_settings(user, settings);
    if (settings.empty()) throw;
    throw ConfigError(message + " [that line is preset " + preset + "'s; your settings of this block: " +
                      join_names(settings, "; ") + "]");
  }
}

}  // namespace

ConfigNode resolve_codec(const ConfigNode& codec, const PluginRegistry& registry, ConfigNode* preset_lifecycle) {
  if (!codec.is_map()) codec.fail("codec: expected {key: BLOCK, value: BLOCK} or {preset: NAME}");
  check_keys(codec, {"preset", "part", "key", "value"}, "codec");
  ConfigNode out = ConfigNode::map(codec.location());
  out.set_path(codec.path());
  std::string preset_file;
  if (const ConfigNode* preset = codec.find("preset")) {
    ConfigNode doc = load_preset(preset->text(), *preset);
    preset_file = doc.at("codec").location().file;
    out = doc.at("codec");
    out.set_path(codec.path());
    if (preset_lifecycle) {
      if (const ConfigNode* lc = doc.find("lifecycle")) *preset_lifecycle = *lc;
    }
  }
  for (const char* side : {"key", "value"}) {
    if (const ConfigNode* b = codec.find(side)) {
      if (ConfigNode* mine = out.find(side)) {
        merge_plugin_config(*mine, *b, registry, PluginFamily::quantizer);
        if (codec.find("preset")) validate_preset_override(registry, *mine, *b, codec.at("preset").text(), preset_file);
      } else {
        out.set(side, *b);
      }
    }
  }
  if (const ConfigNode* part = codec.find("part")) {
    const std::string p = part->text();
    if (p != "key" && p != "value") part->fail("part: expected key or value, got '" + p + "'");
    const ConfigNode* side = out.find(p);
    if (!side) part->fail("the codec has no '" + p + "' block");
    ConfigNode one = ConfigNode::map(codec.location());
    one.set(p, *side);
    return one;
  }
  for (const char* side : {"key", "value"})
    if (!out.find(side)) codec.fail(std::string("codec: missing '") + side + "' block (or give a preset)");
  return out;
}

ExperimentPlan plan_experiment(const std::string& file, const std::vector<std::string>& overrides,
                               const PluginRegistry& registry) {
  return plan_experiment_document(load_yaml_file(file), overrides, registry, file);
}

ExperimentPlan plan_experiment_document(const ConfigNode& document, const std::vector<std::string>& overrides,
                                        const PluginRegistry& registry, const std::string& source_file) {
  if (!document.is_map()) {
    if (document.is_null()) throw ConfigError(source_file + ": the experiment file is empty");
    document.fail("an experiment file is a mapping of keys (" + std::string("name, traces, codec, ...") + ")");
  }
  check_keys(document, kTopLevelKeys, "the experiment");
  ExperimentPlan plan;
  plan.source_file = source_file;

  // Layering: defaults <- preset (per run, below) <- file <- --set.
  ConfigNode user = document;
  std::vector<std::pair<std::string, std::string>> set_paths;  // (path, the --set argument) of every override
  for (const auto& o : overrides) {
    auto [path, value] = parse_set_override(o);
    const std::string top = path.substr(0, path.find('.'));
    if (std::find(kTopLevelKeys.begin(), kTopLevelKeys.end(), top) == kTopLevelKeys.end())
      throw ConfigError("--set " + o + ": unknown key '" + top + "'" + did_you_mean(top, kTopLevelKeys));
    if (top == "sweep" && path != "sweep") {
      // sweep.codec.key.bits=[2, 4]: one entry of a map sweep, whose keys are dotted paths themselves.
      ConfigNode* sweep = user.find("sweep");
      if (sweep && !sweep->is_map() && !sweep->is_null())
        throw ConfigError("--set " + o + ": the file's sweep is a list of named variants (" + sweep->location().str() +
                          "); --set sweep.PATH=[...] sets one entry of a sweep map: replace the whole sweep with --set sweep=...");
      if (!sweep || sweep->is_null()) sweep = &user.set("sweep", ConfigNode::map(value.location()));
      sweep->set(path.substr(6), value);
      continue;
    }
    apply_assignment(user, path, value, registry);
    set_paths.emplace_back(path, o);
  }
  user.set_path("");

  const ConfigNode* name = user.find("name");
  if (!name) document.fail("missing 'name' (the experiment's name, used for its results folder)");
  plan.name = name->text();
  if (plan.name.empty() || plan.name.find('/') != std::string::npos) name->fail("name: must be non-empty and contain no '/'");
  // It names the results folder (name, then name-2, name-3, ...): within a file system's 255-byte file-name limit.
  if (plan.name.size() > kMaxExperimentNameBytes || plan.name.find('\0') != std::string::npos)
    name->fail("name: at most " + std::to_string(kMaxExperimentNameBytes) + " bytes and no NUL (it names the results folder), got " +
               std::to_string(plan.name.size()) + " bytes");
  if (const ConfigNode* d = user.find("description")) plan.description = d->text();
  if (!user.find("codec")) document.fail("missing 'codec' (a {key, value} block or {preset: NAME})");
  if (!user.find("traces") && !user.find("model"))
    document.fail("missing 'traces' (a trace file, a glob, or a list of them), or 'model' for live mode");
  if (user.find("traces") && user.find("model"))
    user.at("model").fail("give either 'traces' (trace replay, vidkv run) or 'model' (live mode, vidkv live), not both");
  if (const ConfigNode* model = user.find("model")) {
    if (!model->is_map()) model->fail("model: expected a block {id: ..., prompts: [...], ...} (see experiments/README.md)");
    plan.model = *model;
  }

  ConfigNode resolved = defaults_document();
  merge_config(resolved, user, registry);
  resolved.set_path("");
  plan.resolved = resolved;

  plan.backend = parse_device(resolved.at("backend").text(), resolved.at("backend").location().str() + ": backend");
  const bool live_mode = !plan.model.is_null();
  if (plan.backend == Device::cuda && live_mode)
    resolved.at("backend").fail("backend cuda: in live mode (vidkv live) the cache lives on the model's device; set "
                                "model: device: cuda (the cache then encodes and stores on that GPU) and leave backend out");
#ifndef VIDKV_WITH_CUDA
  if (plan.backend == Device::cuda)
    resolved.at("backend").fail("cuda is not available: " + cuda_backend_unavailable() + "; use backend: cpu");
#endif
  const std::int64_t seed = resolved.at("seed").as_int();
  if (seed < 0) resolved.at("seed").fail("must be >= 0, got " + std::to_string(seed));
  plan.seed = static_cast<std::uint64_t>(seed);

  const ConfigNode& metrics = resolved.at("metrics");
  const bool live = !plan.model.is_null();
  std::vector<std::string> wanted;
  const auto& names = live ? all_live_metric_names() : all_metric_names();
  auto check_metric = [&](const ConfigNode& m) {
    if (!m.is_scalar()) m.fail("metrics: expected metric names, got a " + std::string(m.is_map() ? "map" : "list"));
    if (m.text() != "all" && std::find(names.begin(), names.end(), m.text()) == names.end())
      m.fail("unknown metric '" + m.text() + "'" + did_you_mean(m.text(), names) + "; valid: all, " + join_names(names));
  };
  if (metrics.is_scalar()) {
    check_metric(metrics);
    wanted.push_back(metrics.text());
  } else if (metrics.is_list()) {
    if (metrics.items().empty()) metrics.fail("metrics: the list is empty; name the metrics to compute, or 'all'");
    for (const auto& m : metrics.items()) {
      check_metric(m);
      wanted.push_back(m.text());
    }
  } else {
    metrics.fail("metrics: expected a list of metric names");
  }
  for (const auto& n : live ? all_live_metric_names() : all_metric_names())
    if (std::find(wanted.begin(), wanted.end(), "all") != wanted.end() || std::find(wanted.begin(), wanted.end(), n) != wanted.end())
      plan.metrics.push_back(n);

  std::string out = resolved.at("output").text();
  for (std::size_t p; (p = out.find("{name}")) != std::string::npos;) out.replace(p, 6, plan.name);
  plan.output_dir = out;

  // Runs: the sweep applied on top of the file, each resolved and built through the registry.
  const ConfigNode* sweep = user.find("sweep");
  std::set<std::string> run_names;
  const std::vector<Variant> variants = expand_sweep(sweep);
  // A variant's values apply over the file and --set in its run (layering); a --set that every run's variant
  // replaces (the path itself, or a block of the variant that holds it) would change nothing and still be recorded in
  // config.yaml: refused.
  for (const auto& [set_path, arg] : set_paths) {
    const Assignment* last = nullptr;
    bool every = !variants.empty();
    for (const Variant& v : variants) {
      const Assignment* covering = nullptr;
      for (const auto& a : v.assignments) {
        const bool same = a.path == set_path;
        const bool inside = set_path.size() > a.path.size() && set_path.compare(0, a.path.size(), a.path) == 0 &&
                            set_path[a.path.size()] == '.' && a.value.is_map() &&
                            a.value.find_path(set_path.substr(a.path.size() + 1)) != nullptr;
        if (same || inside) covering = &a;
      }
      if (!covering) {
        every = false;
        break;
      }
      last = covering;
    }
    if (every && last)
      throw ConfigError("--set " + arg + ": every run of the sweep sets " + set_path + " itself (" + last->value.location().str() +
                        "), over --set, so this value would be used by none; take it out of the sweep, or set the "
                        "sweep's values with --set 'sweep." + last->path + "=[...]'");
  }
  for (const Variant& v : variants) {
    ConfigNode run_user = user;
    run_user.erase("sweep");
    for (const auto& a : v.assignments) {
      const std::string top = a.path.substr(0, a.path.find('.'));
      if (top != "codec" && top != "lifecycle")
        a.value.fail("sweep: only codec.* and lifecycle.* can be swept, not '" + a.path + "'");
      apply_assignment(run_user, a.path, a.value, registry);
    }
    run_user.set_path("");
    ConfigNode preset_lifecycle;
    RunPlan run;
    run.codec = resolve_codec(run_user.at("codec"), registry, &preset_lifecycle);
    ConfigNode lifecycle = defaults_document().at("lifecycle");
    if (preset_lifecycle.is_map()) merge_config(lifecycle, preset_lifecycle, registry);
    if (const ConfigNode* lc = run_user.find("lifecycle")) merge_config(lifecycle, *lc, registry);
    lifecycle.set_path("lifecycle");
    run.lifecycle = parse_params<LifecycleParams>(lifecycle, {}, "lifecycle");
    run.lifecycle_node = lifecycle;
    registry.validate(PluginFamily::quantizer, run.codec.at("key"));
    registry.validate(PluginFamily::quantizer, run.codec.at("value"));
    run.name = v.name.empty() ? (user.at("codec").find("preset") ? user.at("codec").at("preset").text() : plan.name) : v.name;
    check_kivi_value_blocks(run, registry);
    for (const auto& a : v.assignments) run.params.emplace_back(a.path, a.value.dump());
    if (plan.backend == Device::cuda) {
      // Every plugin of the codec must have a CUDA implementation (supports() names the one that has none), checked
      // on a typical KV block; the runner checks each trace's own shape again before replaying it.
      const BlockShape typical{4, 1024, 128};
      for (const char* side : {"key", "value"}) {
        const std::string why = cuda_quantizer_unsupported(*registry.make_quantizer(run.codec.at(side)), typical);
        if (!why.empty())
          run.codec.at(side).fail("backend cuda: run '" + run.name + "': the " + std::string(side) +
                                  " quantizer cannot run on cuda: " + why + "; use backend: cpu for this codec");
      }
    }
    if (!run_names.insert(run.name).second) {
      if (sweep) sweep->fail("two runs are both named '" + run.name + "'");
      throw ConfigError(source_file + ": two runs are both named '" + run.name + "'");
    }
    plan.runs.push_back(std::move(run));
  }

  if (!live) plan.traces = expand_traces(resolved.at("traces"), source_file);
  if (plan.backend == Device::cuda) {
    const std::string why = cuda_backend_unavailable();
    if (!why.empty()) resolved.at("backend").fail("cuda is not available: " + why + "; use backend: cpu");
  }
  if (plan.runs.size() * std::max<std::size_t>(1, plan.traces.size()) > kMaxCells)
    throw ConfigError(source_file + ": " + std::to_string(plan.runs.size()) + " runs x " + std::to_string(plan.traces.size()) +
                      " traces = more than " + std::to_string(kMaxCells) + " cells; split the experiment into several files");
  return plan;
}

}  // namespace vidkv
