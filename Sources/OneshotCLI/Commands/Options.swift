import ArgumentParser
import Episodes
import Experiments
import Foundation
import ResultsStore

// Option groups shared by the commands, and the option values typed at parse time: a bad
// `--set`, `--grid`, `--seeds` or `--gemm` is a usage error before anything runs.

/// Options shared by every command that reads or writes the results store.
struct StoreOptions: ParsableArguments {
  @Option(name: .customLong("store"), help: "Results store: a SQLite file or postgresql://user:password@host:port/database (default: $ONESHOT_STORE or results/oneshot.sqlite).")
  var storePath: String?

  init() {}

  /// Options naming `path`.
  init(storePath: String?) { self.storePath = storePath }

  /// The database path (or PostgreSQL URL) to use.
  var path: String { storePath ?? ProcessInfo.processInfo.environment["ONESHOT_STORE"] ?? ResultsStore.defaultPath }

  /// A store that must already exist (reading commands never create one): a SQLite file, or a
  /// PostgreSQL server (whose database the URL names).
  func existing() throws -> ResultsStore {
    if ResultsStore.isKeywordString(path) { throw StoreError.keywordString }
    guard ResultsStore.exists(path) else {
      throw UserFacingError("no results store at \(path); run an experiment first (oneshot-bench run experiments/ci-smoke.json) or pass --store")
    }
    return try ResultsStore(path: path, mustExist: true)
  }
}

/// Options shared by every command that reads the dataset.
struct DataOptions: ParsableArguments {
  @Option(name: .customLong("data"), help: "Folder with the Omniglot zips (default: $ONESHOT_DATA, else the experiment file's data.path or dataset/omniglot).")
  var dataPath: String?

  /// The folder given on the command line or by ONESHOT_DATA; nil when neither names one.
  var given: String? { dataPath ?? ProcessInfo.processInfo.environment["ONESHOT_DATA"] }

  /// The dataset folder to read.
  var dataset: OmniglotDataset { OmniglotDataset(root: URL(fileURLWithPath: given ?? OmniglotDataset.defaultRoot)) }
}

/// Options of the commands that run experiments (`run`, `sweep`).
struct RunningOptions: ParsableArguments {
  @OptionGroup var store: StoreOptions
  @OptionGroup var data: DataOptions
  @Option(help: "Threads (overrides the experiment file).") var threads: Int?
  @Option(help: "Folder for run checkpoints (runs/<run-id>/).") var runs: String = "runs"

  func validate() throws {
    if let threads, !(1...256).contains(threads) { throw ValidationError("--threads is between 1 and 256") }
  }

  /// The run options with these and `overrides`.
  func runOptions(overrides: [ConfigOverride] = []) -> RunOptions {
    RunOptions(storePath: store.path, threads: threads, overrides: overrides, dataPath: data.given, runsFolder: runs)
  }
}

/// `--gemm M,N,K`.
struct GemmShape: ExpressibleByArgument {
  let m: Int, n: Int, k: Int

  init?(argument: String) {
    let dims = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
    guard dims.count == 3, let m = dims[0], let n = dims[1], let k = dims[2], m > 0, n > 0, k > 0, m <= 1 << 16, n <= 1 << 20, k <= 1 << 16 else { return nil }
    (self.m, self.n, self.k) = (m, n, k)
  }
}
