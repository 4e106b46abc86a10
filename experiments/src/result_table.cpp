#include "vidkv/experiments/src/result_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "vidkv/core/error.h"

namespace vidkv {

const std::vector<std::string> kKeyColumns = {"experiment", "run", "trace", "layer", "kv_head"};

void ResultRow::set(const std::string& column, ResultValue value) {
  for (auto& [c, v] : columns) {
    if (c == column) {
      v = std::move(value);
      return;
    }
  }
  columns.emplace_back(column, std::move(value));
}

const ResultValue* ResultRow::get(const std::string& column) const {
  for (const auto& [c, v] : columns)
    if (c == column) return &v;
  return nullptr;
}

static std::string format_number(double d, int digits) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == std::floor(d) && std::fabs(d) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", d);
    return buf;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, d);
  return buf;
}

std::string format_value(const ResultValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return format_number(std::get<double>(v), 10);
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) throw IoError(tmp + ": cannot create file");
    std::size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n <= 0) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw IoError(tmp + ": write failed (disk full?)");
      }
      done += static_cast<std::size_t>(n);
    }
    ::fsync(fd);
    ::close(fd);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw IoError(path + ": cannot rename the temporary file into place");
  }
}

// Cell file grammar: line 1 "column<TAB>column...", then one row per line, each field "s:TEXT" (text) or "n:NUMBER"
// (%.17g, an exact round trip); missing values are empty. Text values never contain tabs or newlines (they are
// replaced by spaces when written).
void write_cell_file(const std::string& path, const std::vector<ResultRow>& rows) {
  std::vector<std::string> cols = result_columns(rows, {});
  std::ostringstream out;
  for (std::size_t i = 0; i < cols.size(); ++i) out << (i ? "\t" : "") << cols[i];
  out << "\n";
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < cols.size(); ++i) {
      if (i) out << "\t";
      const ResultValue* v = r.get(cols[i]);
      if (!v) continue;
      if (const auto* s = std::get_if<std::string>(v)) {
        std::string t = *s;
        for (auto& ch : t)
          if (ch == '\t' || ch == '\n') ch = ' ';
        out << "s:" << t;
      } else {
        char buf[40];
        std::snprintf(buf, sizeof buf, "%.17g", std::get<double>(*v));  // exact round trip
        out << "n:" << buf;
      }
    }
    out << "\n";
  }
  write_file_atomic(path, out.str());
}

static std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == '\t') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::vector<ResultRow> read_cell_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError(path + ": cannot open result cell");
  std::string line;
  if (!std::getline(in, line)) throw IoError(path + ": empty result cell");
  auto cols = split_tabs(line);
  for (auto& c : cols)
    if (c == "head") c = "kv_head";  // cells written before the column was renamed (result_table.h)
  std::vector<ResultRow> rows;
  int lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    const auto cells = split_tabs(line);
    if (cells.size() != cols.size()) throw IoError(path + ":" + std::to_string(lineno) + ": wrong number of fields");
    ResultRow r;
    for (std::size_t i = 0; i < cols.size(); ++i) {
      const std::string& c = cells[i];
      if (c.empty()) continue;
      if (c.rfind("s:", 0) == 0) {
        r.set(cols[i], c.substr(2));
      } else if (c.rfind("n:", 0) == 0) {
        r.set(cols[i], std::strtod(c.c_str() + 2, nullptr));
      } else {
        throw IoError(path + ":" + std::to_string(lineno) + ": malformed field '" + c + "'");
      }
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

std::string incomplete_cell(const std::vector<ResultRow>& rows) {
  if (rows.empty()) return "it holds no rows";
  auto number = [](const ResultRow& r, const char* column, double& out) {
    const ResultValue* v = r.get(column);
    if (v == nullptr || !std::holds_alternative<double>(*v)) return false;
    out = std::get<double>(*v);
    return true;
  };
  auto text = [](const ResultRow& r, const char* column) {
    const ResultValue* v = r.get(column);
    return v != nullptr && std::holds_alternative<std::string>(*v) ? std::get<std::string>(*v) : std::string();
  };
  const ResultRow& last = rows.back();
  double layer = 0, head = 0;
  if (!number(last, "layer", layer) || !number(last, "kv_head", head) || layer != -1 || head != -1)
    return "its last row is not the trace row (layer -1, kv_head -1): the file ends early";
  const std::string run = text(last, "run"), trace = text(last, "trace");
  std::int64_t expect_layer = 0, expect_head = 0, heads = -1;
  for (std::size_t i = 0; i + 1 < rows.size(); ++i) {
    const ResultRow& r = rows[i];
    const std::string where = "row " + std::to_string(i + 1);
    if (!number(r, "layer", layer) || !number(r, "kv_head", head)) return where + " has no layer or kv_head";
    if (text(r, "run") != run || text(r, "trace") != trace)
      return where + " is of run '" + text(r, "run") + "' on '" + text(r, "trace") + "', the trace row of run '" + run +
             "' on '" + trace + "'";
    if (layer != static_cast<double>(expect_layer))
      return where + " is of layer " + format_value(layer) + " where layer " + std::to_string(expect_layer) + " was due";
    if (head == -1) {  // the layer row closes the layer's KV heads
      if (expect_head == 0 || (heads >= 0 && expect_head != heads))
        return "layer " + std::to_string(expect_layer) + " has " + std::to_string(expect_head) + " KV-head rows" +
               (heads >= 0 ? ", layer 0 has " + std::to_string(heads) : "");
      heads = expect_head;
      expect_head = 0;
      ++expect_layer;
    } else if (head != static_cast<double>(expect_head)) {
      return where + " is of KV head " + format_value(head) + " where KV head " + std::to_string(expect_head) + " was due";
    } else {
      ++expect_head;
    }
  }
  if (expect_layer == 0) return "it has no layer rows";
  if (expect_head != 0) return "layer " + std::to_string(expect_layer) + " has KV-head rows but no layer row";
  return "";
}

std::vector<std::string> result_columns(const std::vector<ResultRow>& rows, const std::vector<std::string>& leading) {
  std::vector<std::string> out = leading;
  for (const auto& r : rows)
    for (const auto& [c, v] : r.columns)
      if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  return out;
}

static std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string rows_to_csv(const std::vector<ResultRow>& rows, const std::vector<std::string>& columns) {
  std::ostringstream out;
  for (std::size_t i = 0; i < columns.size(); ++i) out << (i ? "," : "") << csv_escape(columns[i]);
  out << "\n";
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < columns.size(); ++i) {
      if (i) out << ",";
      if (const ResultValue* v = r.get(columns[i])) out << csv_escape(format_value(*v));
    }
    out << "\n";
  }
  return out.str();
}

std::string json_quote(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string rows_to_jsonl(const std::vector<ResultRow>& rows, const std::vector<std::string>& columns) {
  std::string out;
  for (const auto& r : rows) {
    nlohmann::ordered_json line = nlohmann::ordered_json::object();
    for (const auto& c : columns) {
      const ResultValue* v = r.get(c);
      if (!v) continue;
      if (const auto* s = std::get_if<std::string>(v)) {
        line[c] = *s;
      } else {
        const double d = std::get<double>(*v);
        // The CSV's 10 significant digits (the same number in both files); non-finite as null.
        if (!std::isfinite(d)) line[c] = nullptr;
        else if (d == std::floor(d) && std::fabs(d) < 1e15) line[c] = static_cast<std::int64_t>(d);  // as in the CSV
        else line[c] = std::strtod(format_value(*v).c_str(), nullptr);
      }
    }
    out += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  return out;
}

std::string format_cell(const ResultValue& v) {
  return std::holds_alternative<double>(v) ? format_number(std::get<double>(v), 4) : std::get<std::string>(v);
}

std::string rows_to_markdown(const std::vector<ResultRow>& rows, const std::vector<std::string>& columns) {
  std::ostringstream out;
  out << "|";
  for (const auto& c : columns) out << " " << c << " |";
  out << "\n|";
  for (std::size_t i = 0; i < columns.size(); ++i) out << " --- |";
  out << "\n";
  for (const auto& r : rows) {
    out << "|";
    for (const auto& c : columns) {
      const ResultValue* v = r.get(c);
      std::string text;
      if (v) text = format_cell(*v);
      std::string cell;
      for (char ch : text) cell += ch == '|' ? std::string("\\|") : std::string(1, ch == '\n' || ch == '\r' ? ' ' : ch);
      out << " " << cell << " |";
    }
    out << "\n";
  }
  return out.str();
}

void write_result_files(const std::string& dir, const std::vector<ResultRow>& rows, const std::vector<std::string>& columns,
                        const std::vector<ResultRow>& summary, const std::vector<std::string>& summary_columns) {
  const std::filesystem::path d(dir);
  write_file_atomic((d / "results.csv").string(), rows_to_csv(rows, columns));
  write_file_atomic((d / "results.jsonl").string(), rows_to_jsonl(rows, columns));
  write_file_atomic((d / "summary.md").string(), rows_to_markdown(summary, summary_columns));
}

}  // namespace vidkv
