// ResultsFolder and check_output_inside_working_dir (see results_folder.h).
#include "vidkv/experiments/src/results_folder.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "vidkv/core/error.h"

namespace fs = std::filesystem;

namespace vidkv {

namespace {

// A folder with nothing in it but the lock file of a run killed before it wrote anything.
bool is_empty_dir(const fs::path& d) {
  std::error_code ec;
  if (!fs::is_directory(d, ec)) return false;
  for (const auto& e : fs::directory_iterator(d, ec))
    if (e.path().filename() != ".lock") return false;
  return true;
}

// Creates `d` (and its parents); false when it already existed.
bool create_new(const fs::path& d) {
  std::error_code ec;
  if (d.has_parent_path()) fs::create_directories(d.parent_path(), ec);
  if (::mkdir(d.c_str(), 0777) == 0) return true;
  if (errno == EEXIST) return false;
  VIDKV_THROW(ConfigError, d.string(), ": cannot create the results folder: ", std::strerror(errno));
}

// An exclusive flock on `lock_path` holding this process's id; ConfigError "`who` (process P) `what`" when another
// process holds it.
int take_lock(const std::string& lock_path, const std::string& who, const std::string& what) {
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) VIDKV_THROW(ConfigError, lock_path, ": cannot create the lock file: ", std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    std::string holder;
    std::ifstream(lock_path) >> holder;
    ::close(fd);
    VIDKV_THROW(ConfigError, who, holder.empty() ? "" : " (process " + holder + ")", " ", what);
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0 && ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // the process id is only for the message above
  }
  return fd;
}

}  // namespace

ResultsFolder::ResultsFolder(const ExperimentPlan& plan, const std::string& out, bool resume) {
  if (!out.empty()) {
    dir_ = out;
    std::error_code ec;
    if (fs::exists(dir_, ec) && !fs::is_directory(dir_, ec))
      VIDKV_THROW(ConfigError, "--out ", dir_, ": exists and is not a folder");
    if (!resume && fs::exists(dir_, ec) && !is_empty_dir(dir_))
      VIDKV_THROW(ConfigError, "--out ", dir_, ": the folder already holds files; add --resume to continue the run that "
                  "wrote them, or name a new folder (nothing was overwritten)");
    if (resume && fs::exists(dir_, ec) && !is_empty_dir(dir_) && !fs::exists(fs::path(dir_) / "cells", ec))
      VIDKV_THROW(ConfigError, "--out ", dir_, " --resume: not a VidKV results folder (it has no cells/)");
    fs::create_directories(dir_, ec);
    if (ec) VIDKV_THROW(ConfigError, "--out ", dir_, ": cannot create the folder: ", ec.message());
  } else if (resume) {
    const std::string base = plan.output_dir;
    std::error_code ec;
    if (fs::exists(base, ec)) dir_ = base;
    for (int i = 2; fs::exists(base + "-" + std::to_string(i), ec); ++i) dir_ = base + "-" + std::to_string(i);
    if (dir_.empty()) VIDKV_THROW(ConfigError, "--resume: no results folder ", base, " to resume");
  } else {
    const std::string base = plan.output_dir;
    for (int i = 1;; ++i) {
      const std::string d = i == 1 ? base : base + "-" + std::to_string(i);
      if (create_new(d)) {
        dir_ = d;
        break;
      }
    }
  }
  lock_fd_ = take_lock((fs::path(dir_) / ".lock").string(), dir_ + ": another vidkv run",
                       "is writing this folder; wait for it to finish, or give this run another --out");
}

ResultsFolder::~ResultsFolder() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

ShardLock::ShardLock(const std::string& dir, const ShardSpec& shard, bool share_folder) {
  const fs::path shards = fs::path(dir) / "shards";
  std::error_code ec;
  if (share_folder) {
    fs::create_directories(dir, ec);
    const std::string path = (fs::path(dir) / ".lock").string();
    folder_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (folder_fd_ < 0) VIDKV_THROW(ConfigError, path, ": cannot create the lock file: ", std::strerror(errno));
    if (::flock(folder_fd_, LOCK_SH | LOCK_NB) != 0) {
      std::string holder;
      std::ifstream(path) >> holder;
      ::close(folder_fd_);
      folder_fd_ = -1;
      VIDKV_THROW(ConfigError, dir, ": a vidkv run of the whole experiment", holder.empty() ? "" : " (process " + holder + ")",
                  " is writing this folder; wait for it to finish, or give the shards another --out");
    }
  }
  fs::create_directories(shards, ec);
  if (ec) VIDKV_THROW(ConfigError, shards.string(), ": cannot create the folder: ", ec.message());
  char name[64];
  std::snprintf(name, sizeof name, "shard-%04d-of-%04d.lock", shard.index, shard.count);
  lock_fd_ = take_lock((shards / name).string(), dir + ": shard " + shard.str() + " is already running",
                       "on this folder; wait for it to finish (each shard runs once at a time)");
}

ShardLock::~ShardLock() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
  if (folder_fd_ >= 0) ::close(folder_fd_);
}

void check_output_inside_working_dir(const ExperimentPlan& plan) {
  const ConfigNode* node = plan.resolved.find("output");
  const fs::path cwd = fs::weakly_canonical(fs::current_path());
  std::error_code ec;
  const fs::path target = fs::weakly_canonical(fs::absolute(plan.output_dir), ec);
  const fs::path rel = target.lexically_relative(cwd);
  const bool inside = !ec && !rel.empty() && *rel.begin() != ".." && rel.is_relative();
  if (inside) return;
  const std::string message = "output: '" + plan.output_dir + "' is outside the working directory (" + cwd.string() +
                              "); an experiment file may only write below it. Use a relative path, or name the "
                              "place on the command line with --out DIR";
  if (node) node->fail(message);
  throw ConfigError(plan.source_file + ": " + message);
}

}  // namespace vidkv
