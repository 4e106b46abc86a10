// ProcessGroup (process_group.h): Boost.MPI when built with VIDKV_WITH_MPI and started by an MPI launcher, else one
// process.
#include "vidkv/experiments/src/process_group.h"

#include <cstdlib>
#include <exception>
#include <memory>

#include "vidkv/core/error.h"

#ifdef VIDKV_WITH_MPI
#include <mpi.h>

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/mpi/environment.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#endif

namespace vidkv {

namespace {

#ifdef VIDKV_WITH_MPI
// MPI_Init on the first ProcessGroup::world() of a launched process; MPI_Finalize at exit (static destruction).
// Only the main thread calls MPI (funneled): the runner's worker threads never do.
std::unique_ptr<boost::mpi::environment>& mpi_environment() {
  static std::unique_ptr<boost::mpi::environment> env;
  return env;
}
#endif

}  // namespace

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(name)) return true;
  return false;
}

ProcessGroup::ProcessGroup() {
#ifdef VIDKV_WITH_MPI
  if (!launched_by_mpi()) return;
  mpi_environment() = std::make_unique<boost::mpi::environment>(boost::mpi::threading::funneled, false);
  const boost::mpi::communicator world;
  rank_ = world.rank();
  size_ = world.size();
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_size(node, &local_size_);
  MPI_Comm_free(&node);
  mpi_ = true;
#else
  // Started by mpirun as one of several processes, but without MPI here: each would run the whole experiment into
  // its own folder. Refused instead.
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* size = std::getenv(name);
    if (size && std::atoi(size) > 1)
      VIDKV_THROW(ConfigError, "started by an MPI launcher as one of ", size, " processes (", name, "), but this vidkv is "
                  "built without MPI (VIDKV_ENABLE_MPI=OFF), so each process would run the whole experiment: rebuild "
                  "with Boost.MPI installed (libboost-mpi-dev; -DVIDKV_ENABLE_MPI=ON), or split the experiment with "
                  "vidkv run --shard i/N and vidkv merge (docs/distributed.md)");
  }
#endif
}

ProcessGroup& ProcessGroup::world() {
  static ProcessGroup group;
  return group;
}

void ProcessGroup::barrier() {
#ifdef VIDKV_WITH_MPI
  if (mpi_) boost::mpi::communicator().barrier();
#endif
}

std::string ProcessGroup::broadcast(const std::string& text) {
  std::string out = text;
#ifdef VIDKV_WITH_MPI
  if (mpi_) boost::mpi::broadcast(boost::mpi::communicator(), out, 0);
#endif
  return out;
}

std::vector<std::string> ProcessGroup::all_gather(const std::string& text) {
  std::vector<std::string> out;
#ifdef VIDKV_WITH_MPI
  if (mpi_) {
    boost::mpi::all_gather(boost::mpi::communicator(), text, out);
    return out;
  }
#endif
  out.push_back(text);
  return out;
}

void ProcessGroup::agree(const std::function<void()>& step) {
  std::exception_ptr failure;
  std::string message;
  try {
    step();
  } catch (const std::exception& e) {
    failure = std::current_exception();
    message = e.what();
    if (message.empty()) message = "failed";
  }
  if (!mpi_) {
    if (failure) std::rethrow_exception(failure);
    return;
  }
  const std::vector<std::string> all = all_gather(message);
  if (failure) std::rethrow_exception(failure);
  for (std::size_t r = 0; r < all.size(); ++r)
    if (!all[r].empty()) throw Error("rank " + std::to_string(r) + ": " + all[r]);
}

}  // namespace vidkv
