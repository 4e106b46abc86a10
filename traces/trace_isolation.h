// Reading an untrusted file's structure in a child process (docs/reliability.md).
//
// The system HDF5 (1.10 on Debian 12) can crash (SIGSEGV, free() of a bad pointer), loop forever or allocate
// without bound on a corrupted file, inside the library where no check of ours can come first. So the first reads
// of a file run in a fork()ed child that reports back through a pipe: its result text, or the vidkv::Error it
// threw (same type, same message), plus "now reading OBJECT" progress notes. The parent turns every other ending
// into an IoError naming the file and the last object the child reported:
//   - killed by a signal or exited without a result (a crash inside HDF5),
//   - no progress note for TraceReadPolicy::stall_seconds (a loop; the child is killed),
//   - out of memory (std::bad_alloc, or the address-space limit set in the child: memory budget + 1 GiB).
// The parent then repeats the same reads itself: the library is deterministic, so reads that returned in the
// child return in the parent (unless the file changes in between; a changed file has another identity below and
// is checked again).
#pragma once

#include <functional>
#include <string>

namespace vidkv::trace_isolation {

// Runs `work` in a child process and returns what it returned; throws as described above. `what` names the
// activity for messages ("reading the structure", "validating"). Runs `work` in this process when the policy
// says isolate = false. Not reentrant from inside `work`.
std::string run_isolated(const std::string& path, const std::string& what, const std::function<std::string()>& work);

// Inside `work`: notes that OBJECT is being read now (resets the stall clock; named if the child dies). Cheap;
// a no-op outside a child.
void report_progress(const std::string& file, const std::string& object);

// True inside the child process of run_isolated. Mutexes of the parent may have been held by another thread at
// fork(), so code that runs in the child must not take them (trace_read_policy and the checked-file cache skip
// their locks there: the child has one thread).
bool in_child();

// Whether `path`, as it is now on disk (device, inode, size, modification time), already passed the check `level`
// in this process; `mark_checked` records it. Levels: 1 structure (TraceReader open), 2 full (validate_trace).
bool already_checked(const std::string& path, int level);
void mark_checked(const std::string& path, int level);

}  // namespace vidkv::trace_isolation
