#include "vidkv/traces/trace_schema.h"

// The schema is header-only constants; this translation unit checks that the header stands on its own.
