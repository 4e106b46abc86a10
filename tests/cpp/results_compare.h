// Helpers of the end-to-end tests that run the real `vidkv` binary and compare results folders.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace vidkv::test {

// The fields of one CSV line (RFC 4180 quoting: commas inside double quotes do not split).
inline std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> cells;
  std::string cur;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    if (c == ',' && !quoted) {
      cells.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  cells.push_back(cur);
  return cells;
}

// results.csv without the `seconds` column (wall time differs between runs by nature).
inline std::string csv_without_seconds(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string line, out;
  int seconds_col = -1;
  bool header = true;
  while (std::getline(in, line)) {
    const std::vector<std::string> cells = csv_fields(line);
    if (header) {
      for (std::size_t i = 0; i < cells.size(); ++i)
        if (cells[i] == "seconds") seconds_col = static_cast<int>(i);
      header = false;
    }
    for (std::size_t i = 0; i < cells.size(); ++i)
      if (static_cast<int>(i) != seconds_col) out += cells[i] + ",";
    out += "\n";
  }
  return out;
}

}  // namespace vidkv::test
