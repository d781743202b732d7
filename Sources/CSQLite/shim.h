#include <sqlite3.h>

/// SQLITE_TRANSIENT does not import into Swift (it is a cast macro); Swift strings need it.
static inline sqlite3_destructor_type csqlite_transient(void) { return SQLITE_TRANSIENT; }
