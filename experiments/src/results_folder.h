// The results folder of `vidkv run`: which folder, whether it may be reused, and a lock so that one run at a time
// writes it (docs/reliability.md).
//
//   - without --out: a new folder OUTPUT, OUTPUT-2, OUTPUT-3, ... created atomically (mkdir), so two runs started
//     together never share one; with --resume the latest existing one;
//   - with --out DIR: DIR, which may already hold files only with --resume;
//   - either way an exclusive flock(2) on DIR/.lock, held until the object is destroyed (the process ends): a
//     second run on the same folder is refused with the first one's process id. The kernel drops the lock when a
//     process dies, so a killed run never leaves a stale lock.
#pragma once

#include <string>

#include "vidkv/experiments/src/cell_partition.h"
#include "vidkv/experiments/src/experiment_plan.h"

namespace vidkv {

class ResultsFolder {
 public:
  // `out` is --out (empty: the plan's output pattern), `resume` is --resume. Throws ConfigError naming the folder.
  ResultsFolder(const ExperimentPlan& plan, const std::string& out, bool resume);
  ~ResultsFolder();
  ResultsFolder(const ResultsFolder&) = delete;
  ResultsFolder& operator=(const ResultsFolder&) = delete;

  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int lock_fd_ = -1;
};

// The lock of one shard of a results folder that several processes write (docs/distributed.md): an exclusive
// flock(2) on DIR/shards/shard-IIII-of-NNNN.lock, which holds the process id (what a test or a person reads to find
// the process of a shard), held until destroyed. A second process on the same shard is refused (ConfigError with
// the first one's process id); shards of one folder run side by side. Creates DIR/shards/ when missing.
// `share_folder`: also a shared flock on DIR/.lock (job-array shards), so that a whole `vidkv run` of the folder
// (which holds DIR/.lock exclusively) and its shards never run at once. MPI ranks pass false: rank 0 holds
// DIR/.lock for all of them.
class ShardLock {
 public:
  ShardLock(const std::string& dir, const ShardSpec& shard, bool share_folder);
  ~ShardLock();
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;

 private:
  int lock_fd_ = -1;
  int folder_fd_ = -1;
};

// ConfigError (at the YAML line of `output:`) when the plan's output folder lies outside the current working
// directory (absolute, "..", or through a symbolic link): a YAML file may only write below where vidkv runs;
// --out names any other place.
void check_output_inside_working_dir(const ExperimentPlan& plan);

}  // namespace vidkv
