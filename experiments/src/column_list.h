// Lists of result-column names as the summary's presentation uses them (terminal_table.h, column_key.h,
// summary_notes.h): membership, and the comma-separated join its lines print (of names, or of notes' entries).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace vidkv {

inline bool has_column(const std::vector<std::string>& columns, const std::string& column) {
  return std::find(columns.begin(), columns.end(), column) != columns.end();
}

// "a, b, c" ("" for none).
inline std::string comma_join(const std::vector<std::string>& items) {
  std::string s;
  for (const std::string& c : items) s += (s.empty() ? "" : ", ") + c;
  return s;
}

}  // namespace vidkv
