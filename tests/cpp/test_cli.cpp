// The command line keeps its promises (issue 14 item 5): every command and every word that groups commands has a
// generated `--help` (exit 0, its usage line, its options), every option that help lists is accepted, and every flag
// the README's command table documents is one the command's help lists. Parsing is checked in process with the
// parser `vidkv` itself builds (build_command_line), help through the real binary.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "catch.h"
#include "vidkv/experiments/src/command_line.h"

using namespace vidkv::cli;

namespace {

const std::string kVidkv = std::string(VIDKV_BINARY_DIR) + "/bin/vidkv";

struct Output {
  int status;
  std::string text;
};

Output run(const std::string& args) {
  std::string text;
  FILE* p = ::popen((kVidkv + " " + args + " 2>&1").c_str(), "r");
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) text.append(buf.data(), n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

std::string joined(const std::vector<std::string>& words) {
  std::string s;
  for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
  return s;
}

// Parses `line` (after "vidkv") with a fresh parser; returns "" or CLI11's message. Nothing runs.
std::string parse_error(const std::string& line) {
  std::vector<std::string> words{"vidkv"};
  std::istringstream in(line);
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<const char*> argv;
  for (const auto& w : words) argv.push_back(w.c_str());
  CommandLine cl = build_command_line(all_commands());
  try {
    cl.app->parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  return "";
}

// One accepted command line per option of every command (and the README's examples); the test below checks that
// together they use every option the commands declare.
const char* const kAccepted[] = {
    "run exp.yaml",
    "run exp.yaml --set codec.value.gamma=0.5 --set seed=3 --jobs 2 --resume --out DIR --quiet --implementation reference --all-columns",
    "run exp.yaml --set=codec.key.bits=3 --jobs=4",
    "run exp.yaml --allow-external-data --allow-filter-plugins",
    "run exp.yaml --shard 0/4 --out DIR --resume",
    "merge DIR",
    "run exp.yaml --plugin libq.so --plugin q.py --allow-plugins",
    "live exp.yaml --set model.max_new_tokens=16 --out DIR",
    "validate-metrics exp.yaml --set seed=1 --out DIR --model M --gguf smollm2 --jobs 2 --device cpu --dtype float32 --threads 1",
    "record --model M --gguf smollm2 --video v.mp4 --frames 4 --prompt hi --question q --system s --document d.txt "
    "--intro i --text-source t --notes n --max-tokens 100 --max-new-tokens 4 --query-generated 2 --device cpu "
    "--dtype bfloat16 --threads 1 --summary s.json -o fr.h5",
    "record --model M --prompt hi --output fr.h5",
    "report DIR",
    "report DIR --trace t.h5 --out OUT --layers 0 --heads 0",
    "report DIR --layers 0,5",
    "bench",
    "bench --backend cpu --shape 2x1x64x32 --threads 2 --layers 2 --repeats 1 --presets kivi-2 --implementation reference "
    "--no-torch",
    "bench --clock cpu",
    "bench --fft-tiers fftw-batched,avx512 --presets vidkv-k1.5-v1.58 --no-torch",
    "bench --fft-tiers none",
    "bench --backend cuda --tokens 256,512 --layers 2 --repeats 3 --presets kivi-2 --no-torch",
    "bench --backend cuda --shape 2x1x256x128",
    "bench --attention --batches 1,2 --tokens 256 --presets kivi-2 --repeats 2 --no-torch",
    "bench --attention --query-tokens 3 --tokens 256 --no-torch",
    "bench --attention --kv-heads 2 --query-heads-per-kv 16 --head-dim 64 --tokens 256 --no-torch",
    "bench --live --tokens 8192 --steps 8 --rounds 2 --hidden 256 --layers 2 --device cpu --sdpa flash,math --profile --fused",
    "bench --live --tokens 8192 --batches 1,4 --prefill-chunk 2048 --fused --fused-only --device cpu",
    "trace info t.h5",
    "trace info t.h5 --allow-external-data --allow-filter-plugins",
    "trace validate t.h5",
    "trace validate t.h5 --allow-external-data --allow-filter-plugins",
    "trace synth --shape 2x1x64x8 -o t.h5",
    "trace synth --shape 2x1x64x8 --frames 2 --grid 2x3 --query-heads 7 --hidden 56 --system-tokens 4 --query-tokens 2 "
    "--generated-tokens 1 --outlier-channels 1 --seed 5 --dtype bf16 --deflate 1 --output t.h5",
    "trace bench-read t.h5 --max-growth-over-layer-mb 16",
    "plugins list",
    "plugins list --plugin libq.so",
    "plugins describe uniform",
    "plugins describe q --plugin libq.so",
    "plugins check libq.so",
    "plugins check --builtin",
    "presets bits",
    "presets bits --shape 4x64x32",
};

}  // namespace

TEST_CASE("every command line of the accepted list parses", "[cli]") {
  for (const char* line : kAccepted) {
    INFO("vidkv " << line);
    CHECK(parse_error(line).empty());
  }
}

TEST_CASE("the accepted list uses every option every command declares", "[cli]") {
  CommandLine cl = build_command_line(all_commands());
  for (std::size_t i = 0; i < cl.leaves.size(); ++i) {
    const std::string words = joined(cl.words[i]);
    for (const CLI::Option* opt : cl.leaves[i].first->get_options()) {
      if (opt->get_lnames().empty() || opt->get_lnames()[0] == "help") continue;
      const std::string flag = "--" + opt->get_lnames()[0];
      bool used = false;
      for (const char* line : kAccepted) {
        const std::string l = line;
        used = used || (l.rfind(words + " ", 0) == 0 &&
                        (l.find(" " + flag + " ") != std::string::npos || l.find(" " + flag + "=") != std::string::npos ||
                         (l.size() >= flag.size() && l.compare(l.size() - flag.size(), flag.size(), flag) == 0)));
      }
      INFO("vidkv " << words << " " << flag);
      CHECK(used);
    }
  }
}

TEST_CASE("wrong command lines are usage errors naming the problem", "[cli]") {
  CHECK(parse_error("run").find("EXPERIMENT") != std::string::npos);
  CHECK(parse_error("run exp.yaml --bogus 1").find("--bogus") != std::string::npos);
  CHECK(parse_error("run exp.yaml --jobs 0").find("--jobs") != std::string::npos);
  CHECK(parse_error("bench --backend tpu").find("tpu") != std::string::npos);
  CHECK(parse_error("bench --clock sundial").find("sundial") != std::string::npos);
  CHECK(parse_error("bench --fft-tiers fftw3").find("fftw3") != std::string::npos);
  CHECK(parse_error("trace synth --shape 2x1x64x8").find("--output") != std::string::npos);
  CHECK(parse_error("trace synth --shape 2x1x64x8 --dtype fp8 -o t.h5").find("fp8") != std::string::npos);
  CHECK_FALSE(parse_error("trace").empty());  // a group needs one of its commands
  CHECK(parse_error("plugins check").find("give a plugin library, or --builtin") != std::string::npos);
  // An unknown command is named, with the closest one.
  const Output unknown = run("trac");
  CHECK(unknown.status == 2);
  CHECK(unknown.text.find("unknown command 'trac' (did you mean 'trace'?)") != std::string::npos);
  const Output far = run("frobnicate");
  CHECK(far.status == 2);
  CHECK(far.text.find("the commands: ") != std::string::npos);
  CHECK(far.text.find("run") != std::string::npos);
  const Output bad = run("trace synth --shape 2x1x64x8 --bogus 1 -o /nonexistent/t.h5");
  CHECK(bad.status == 2);
  CHECK(bad.text.find("vidkv: error: vidkv trace synth: ") == 0);
  CHECK(bad.text.find("(see vidkv trace synth --help)") != std::string::npos);
}

TEST_CASE("vidkv bench refuses the --live and --attention options without them, naming the option", "[cli]") {
  // Usage errors (exit status 2, as an unknown option), pointing to the command's help.
  for (const char* option : {"--prefill-chunk 5", "--fused-only", "--batches 2", "--tokens 64", "--query-tokens 2", "--kv-heads 8",
                             "--query-heads-per-kv 16", "--head-dim 64"}) {
    const Output o = run(std::string("bench --no-torch --repeats 1 --shape 1x1x32x8 ") + option);
    INFO(option << ": " << o.text);
    CHECK(o.status == 2);
    const std::string name = std::string(option).substr(0, std::string(option).find(' '));
    CHECK(o.text.find("vidkv: error: vidkv bench: " + name + " applies to --") == 0);
    CHECK(o.text.find("(see vidkv bench --help)") != std::string::npos);
  }
  // The cpu-only and --live-only options with --attention, and a bad count named by its own option (all refused
  // before any GPU is asked for).
  const std::pair<const char*, const char*> refused[] = {
      {"bench --attention --threads 2", "--threads applies to --backend cpu only"},
      {"bench --attention --backend cpu", "--attention runs on the GPU"},
      {"bench --attention --fused-only", "--fused-only applies to --live only"},
      {"bench --attention --batches 0", "--batches: expected positive batch sizes, got '0'"},
      {"bench --attention --tokens 8192,x", "--tokens: expected positive token counts, got 'x'"},
      {"bench --attention --query-tokens 9", "--query-tokens: Value 9 not in range 1 to 8"},
      {"bench --attention --head-dim 300", "--head-dim: Value 300 not in range 1 to 256"},
      {"bench --attention --query-heads-per-kv 0", "--query-heads-per-kv: Value 0 not in range 1 to 128"},
  };
  for (const auto& [args, message] : refused) {
    const Output o = run(args);
    INFO(args << ": " << o.text);
    CHECK(o.status == 2);
    CHECK(o.text.find(message) != std::string::npos);
  }
}

TEST_CASE("vidkv --help and every command's and group's --help are generated and exit 0", "[cli]") {
  const Output top = run("--help");
  CHECK(top.status == 0);
  CommandLine cl = build_command_line(all_commands());
  std::set<std::string> groups;
  for (std::size_t i = 0; i < cl.leaves.size(); ++i) {
    const std::string words = joined(cl.words[i]);
    CHECK(top.text.find(cl.words[i][0]) != std::string::npos);
    if (cl.words[i].size() > 1) groups.insert(cl.words[i][0]);
    const Output help = run(words + " --help");
    INFO("vidkv " << words << " --help:\n" << help.text);
    CHECK(help.status == 0);
    CHECK(help.text.find("Usage: vidkv " + words) != std::string::npos);
    CHECK(help.text.find(cl.leaves[i].first->get_description()) != std::string::npos);
    for (const CLI::Option* opt : cl.leaves[i].first->get_options())
      if (!opt->get_lnames().empty()) CHECK(help.text.find("--" + opt->get_lnames()[0]) != std::string::npos);
  }
  CHECK(groups == std::set<std::string>{"plugins", "presets", "trace"});
  for (const auto& g : groups) {  // `vidkv trace --help` lists its commands
    const Output help = run(g + " --help");
    INFO("vidkv " << g << " --help:\n" << help.text);
    CHECK(help.status == 0);
    for (std::size_t i = 0; i < cl.words.size(); ++i)
      if (cl.words[i][0] == g) CHECK(help.text.find(cl.words[i][1]) != std::string::npos);
  }
}

TEST_CASE("every flag of the README's command table is in that command's --help", "[cli]") {
  // Rows "| `vidkv WORDS ...` | ... |": the command words are the leading lower-case words (alternatives
  // written a\|b), the flags every --name in the code spans of the first cell.
  std::ifstream in(std::string(VIDKV_SOURCE_DIR) + "/README.md");
  std::string line;
  int rows = 0, flags = 0;
  const std::regex span("`vidkv ([^`]*)`"), flag("(--[a-z][a-z-]*)");
  while (std::getline(in, line)) {
    if (line.rfind("| `vidkv ", 0) != 0) continue;
    const std::string cell = line.substr(0, line.find(" | ", 2));
    for (std::sregex_iterator m(cell.begin(), cell.end(), span), end; m != end; ++m) {
      std::istringstream words((*m)[1].str());
      std::vector<std::vector<std::string>> commands{{}};
      for (std::string w; words >> w && std::regex_match(w, std::regex("[a-z][a-z-]*(\\\\\\|[a-z][a-z-]*)*"));) {
        std::vector<std::vector<std::string>> next;
        std::stringstream alts(std::regex_replace(w, std::regex("\\\\\\|"), " "));
        for (std::string a; alts >> a;)
          for (auto c : commands) c.push_back(a), next.push_back(c);
        commands = next;
      }
      const std::string text = (*m)[1].str();
      for (const auto& c : commands) {
        ++rows;
        const Output help = run(joined(c) + " --help");
        INFO("README: vidkv " << text << "\nvidkv " << joined(c) << " --help:\n" << help.text);
        CHECK(help.status == 0);
        for (std::sregex_iterator f(text.begin(), text.end(), flag), fend; f != fend; ++f, ++flags)
          CHECK(help.text.find((*f)[1].str()) != std::string::npos);
      }
    }
  }
  CHECK(rows >= 11);
  CHECK(flags >= 10);
}

TEST_CASE("vidkv run warns when a token protector takes visual candidates from a trace without visual tokens", "[cli][experiments]") {
  // The bundled trace is text-only (SmolLM2): STP with its default candidates (visual) protects nothing there.
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("vidkv-stp-note-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::filesystem::path exp = dir / "stp.yaml";
  std::ofstream(exp) << "name: stp\ntraces: [" << VIDKV_SOURCE_DIR << "/traces/data/smollm2-135m-longdoc.h5]\n"
                     << "codec: {preset: fp16}\nsweep:\n  - {name: visual, codec: {preset: vidkv-k1.5-v1.66-stp}}\n"
                     << "  - {name: ctx, codec: {preset: vidkv-k1.5-v1.66-stp, value: {protector: {candidates: context}}}}\n";
  const Output o = run("run " + exp.string() + " --quiet --out " + (dir / "out").string());
  CHECK(o.status == 0);
  CHECK(o.text.find("has no visual tokens, so the token protector of 'visual' (candidates: visual, the default) "
                    "protects nothing there") != std::string::npos);
  // (only 'visual' is named: the list would read 'visual', 'ctx')
  std::filesystem::remove_all(dir);
}
