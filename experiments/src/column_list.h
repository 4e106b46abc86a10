// Lists of result-column names as the summary's presentation uses them (terminal_table.h, column_key.h,
// summary_notes.h): membership. Their lines join names with join_names (core/name_list.h).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace vidkv {

inline bool has_column(const std::vector<std::string>& columns, const std::string& column) {
  return std::find(columns.begin(), columns.end(), column) != columns.end();
}

}  // namespace vidkv
