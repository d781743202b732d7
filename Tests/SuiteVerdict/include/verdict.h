// The test binary's load-time hook (see verdict.c); nothing to call from Swift.
#ifndef ONESHOT_SUITE_VERDICT_H
#define ONESHOT_SUITE_VERDICT_H
#endif
