// Registers the XCTest observer of Tests/SupportTests/SuiteVerdict.swift when the test binary
// loads: swift-corelibs-xctest has no principal class, and no test class runs first for sure.
#include "verdict.h"

extern void oneshot_suite_verdict_register(void);

__attribute__((constructor)) static void oneshot_suite_verdict_load(void) { oneshot_suite_verdict_register(); }
