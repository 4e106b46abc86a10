// PATH.partial files (a trace being written, renamed into place when complete) removed when the process is
// interrupted: SIGINT, SIGTERM and SIGHUP unlink every registered partial file, then the signal takes its course
// (the previous handler runs, or the default action ends the process). A SIGKILL cannot be caught: the partial
// file it leaves is replaced by the next write of the same trace (TraceWriter creates it with truncation).
#pragma once

#include <string>

namespace vidkv {

// Registers `partial` (installs the handlers on first use). At most 64 at once; more are simply not registered.
void register_partial_file(const std::string& partial);
void unregister_partial_file(const std::string& partial);

}  // namespace vidkv
