// swift-tools-version:6.0
import PackageDescription

// Hot loops (im2col, pooling, image decoding, Hausdorff distances) are compiled with
// optimisation even in debug builds, so `swift test` runs the known-answer checks in seconds.
// Unsafe flags are allowed here because this is the root package.
let optimised: [SwiftSetting] = [.unsafeFlags(["-O"])]

// oneDNN: Debian's 2.6 (libdnnl-dev) unless ONESHOT_ONEDNN names the prefix of another copy,
// e.g. oneDNN 3.x from PyPI (`scripts/onednn3` installs it and prints the build command): its
// headers in PREFIX/include, libdnnl.so and the libraries it loads in PREFIX/lib. The C code
// speaks both APIs (Sources/CConvolution/cdnnl_api.c). Build such a copy into its own scratch
// folder (--scratch-path .build-onednn3): the module cache remembers which dnnl.h it read.
let onednnPrefix = Context.environment["ONESHOT_ONEDNN"].flatMap { $0.isEmpty ? nil : $0 }
let onednnC: [CSetting] = onednnPrefix.map { [.unsafeFlags(["-I\($0)/include"])] } ?? []
let onednnSwift: [SwiftSetting] = onednnPrefix.map { [.unsafeFlags(["-Xcc", "-I\($0)/include"])] } ?? []
// That copy's libdnnl.so by its path (a -L would come after the system folders that other
// libraries' pkg-config flags name, and -ldnnl would find Debian's), with an rpath rather than a
// runpath: libdnnl.so finds its own dependencies (TBB, the compiler runtime) through it too.
let onednnLink: [LinkerSetting] = onednnPrefix.map {
  [.unsafeFlags(["\($0)/lib/libdnnl.so", "-Xlinker", "-rpath", "-Xlinker", "\($0)/lib", "-Xlinker", "--disable-new-dtags"])]
} ?? [.linkedLibrary("dnnl")]

let package = Package(
  name: "oneshot-bench",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "oneshot-bench", targets: ["oneshot-bench"]),
    .library(name: "Model", targets: ["Model"]),
    .library(name: "Episodes", targets: ["Episodes"]),
    .library(name: "ResultsStore", targets: ["ResultsStore"]),
    .library(name: "Reports", targets: ["Reports"]),
    .library(name: "Experiments", targets: ["Experiments"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/weichsel/ZIPFoundation", exact: "0.9.20"),
  ],
  targets: [
    .systemLibrary(
      name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
      providers: [.apt(["libpng-dev"])]),
    .systemLibrary(
      name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libturbojpeg",
      providers: [.apt(["libturbojpeg0-dev"])]),
    .systemLibrary(
      name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
      providers: [.apt(["libsqlite3-dev"])]),
    .systemLibrary(
      name: "CPostgres", path: "Sources/CPostgres", pkgConfig: "libpq",
      providers: [.apt(["libpq-dev"])]),
    .systemLibrary(
      name: "CDNNL", path: "Sources/CDNNL",
      providers: [.apt(["libdnnl-dev"])]),
    .target(
      name: "CConvolution", path: "Sources/CConvolution",
      cSettings: [.unsafeFlags(["-O2"])] + onednnC, linkerSettings: onednnLink),
    // The machine's arithmetic peak (a register-only FMA loop), the yardstick `bench` prints
    // every figure against.
    .target(name: "CMachine", path: "Sources/CMachine", cSettings: [.unsafeFlags(["-O2"])]),
    // Small utilities every module shares: strict decoding, canonical JSON, SHA-256.
    .target(name: "Support", swiftSettings: optimised),
    .target(name: "Model", dependencies: ["CDNNL", "CConvolution", "Support"], swiftSettings: optimised + onednnSwift),
    .target(
      name: "Episodes",
      dependencies: ["CPNG", "CJPEG", "Support", .product(name: "ZIPFoundation", package: "ZIPFoundation")],
      swiftSettings: optimised),
    .target(name: "ResultsStore", dependencies: ["CSQLite", "CPostgres", "Support"], swiftSettings: optimised),
    // Rendering of store records (tables, CSV, JSON, markdown, HTML with SVG charts, seed
    // groups); knows nothing of training.
    .target(name: "Reports", dependencies: ["ResultsStore", "Support"]),
    // The experiment harness: configuration, run plan, trainer, scorers, sweeps, the CI gate.
    // A library, so that the commands stay thin and tests import it like any user would.
    .target(name: "Experiments", dependencies: ["Model", "Episodes", "ResultsStore", "Reports", "Support"], swiftSettings: onednnSwift),
    // The commands (argument parsing, bounds, what each subcommand does): a library, so that the
    // fuzzer's command-line target and the tests parse argument vectors exactly as the binary does.
    .target(
      name: "OneshotCLI",
      dependencies: [
        "Experiments", "Model", "Episodes", "ResultsStore", "Reports", "Support", "CMachine",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ], swiftSettings: onednnSwift),
    .executableTarget(name: "oneshot-bench", dependencies: ["OneshotCLI", "Support"], swiftSettings: onednnSwift),
    // libFuzzer's driver for the readers in Experiments/Fuzzing.swift and the command line
    // (scripts/fuzz); in an ordinary build it replays input files.
    .executableTarget(name: "oneshot-fuzz", dependencies: ["Experiments", "OneshotCLI"], swiftSettings: onednnSwift),
    // Registers SupportTests' XCTest observer when the test binary loads (see SuiteVerdict.swift).
    .target(name: "CSuiteVerdict", path: "Tests/SuiteVerdict"),
    .testTarget(name: "SupportTests", dependencies: ["Support", "CSuiteVerdict"]),
    .testTarget(name: "ModelTests", dependencies: ["Model"], exclude: ["Fixtures"], swiftSettings: onednnSwift),
    .testTarget(name: "EpisodesTests", dependencies: ["Episodes", "Support"]),
    .testTarget(name: "ResultsStoreTests", dependencies: ["ResultsStore", "TestSupport"]),
    .testTarget(name: "ReportsTests", dependencies: ["Reports", "ResultsStore", "Support", "Episodes"]),
    // What several test targets share: a test case with a temporary folder of its own.
    .target(name: "TestSupport", path: "Tests/TestSupport"),
    // Experiments alone: the conformance suite every few-shot method passes.
    .testTarget(name: "ExperimentsTests", dependencies: ["Experiments", "Episodes", "Model", "TestSupport"], exclude: ["Fixtures"], swiftSettings: onednnSwift),
    .testTarget(name: "OneshotBenchTests", dependencies: ["TestSupport", "Experiments", "OneshotCLI", "oneshot-bench", "ResultsStore", "Episodes", "Model", "Reports", "Support"], swiftSettings: onednnSwift),
  ],
  swiftLanguageModes: [.v6]
)
