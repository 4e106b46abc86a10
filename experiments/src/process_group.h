// The processes of one `vidkv run`: this process alone, or the ranks of an MPI job (docs/distributed.md).
//
// `mpirun -np N vidkv run EXP` starts N processes; built with MPI (VIDKV_ENABLE_MPI, Boost.MPI over Open MPI) and
// started by an MPI launcher, ProcessGroup::world() initializes MPI on first use and is the N ranks of
// MPI_COMM_WORLD. Otherwise -- an MPI-less build, or `vidkv run` started without a launcher -- it is one process of
// rank 0, and nothing of MPI is initialized. "Started by a launcher" is read from the environment the launchers set
// (launched_by_mpi()), so a plain `vidkv run` never pays MPI start-up.
//
// Every collective below must be called by every rank in the same order; agree() is how a failure on one rank
// reaches all of them instead of leaving the others waiting in the next collective.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace vidkv {

// True when the environment shows an MPI launcher: OMPI_COMM_WORLD_SIZE (Open MPI's mpirun), PMI_SIZE (MPICH's and
// Intel MPI's Hydra, Slurm's srun --mpi=pmi2) or PMIX_RANK (srun --mpi=pmix).
bool launched_by_mpi();

class ProcessGroup {
 public:
  // This process alone, or (built with MPI and launched_by_mpi()) every rank of the MPI job; MPI is initialized on
  // the first call and finalized when the process exits. Built without MPI but started by a launcher as one of
  // several processes (OMPI_COMM_WORLD_SIZE or PMI_SIZE above 1): ConfigError saying so, since every process would
  // run the whole experiment.
  static ProcessGroup& world();

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank among the processes of this node (MPI_COMM_TYPE_SHARED): which GPU of the node a rank takes.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  bool is_mpi() const { return mpi_; }

  void barrier();
  // Rank 0's `text` on every rank.
  std::string broadcast(const std::string& text);
  // Runs `step` on every rank. When it throws on any rank, every rank throws: vidkv::Error carrying the lowest
  // failing rank's message (prefixed "rank R: " when there are several ranks); the failing ranks rethrow their own.
  void agree(const std::function<void()>& step);
  // Every rank's `text`, in rank order, on every rank.
  std::vector<std::string> all_gather(const std::string& text);

 private:
  ProcessGroup();
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool mpi_ = false;
};

}  // namespace vidkv
