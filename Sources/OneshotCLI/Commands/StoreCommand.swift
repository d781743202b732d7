import Experiments
import ArgumentParser
import Foundation
import ResultsStore

/// `oneshot-bench store ...`: moving runs between stores.
struct StoreCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "store", abstract: "Copy runs between results stores (SQLite files and PostgreSQL servers).", subcommands: [Copy.self])

  /// `oneshot-bench store copy SRC DST`.
  struct Copy: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Copy every run of SRC that DST lacks, keyed by run id, each in one transaction; copying again adds nothing.",
      discussion: "SRC and DST are SQLite files or postgresql://user:password@host:port/database URLs, e.g. an offline node's file into the shared server.")

    @Argument(help: "Source store (a SQLite file that exists, or a PostgreSQL URL).") var source: String
    @Argument(help: "Destination store (created when it is a new SQLite file).") var destination: String

    func run() throws {
      guard source != destination else { throw UserFacingError("source and destination are the same store") }
      let from = try StoreOptions(storePath: source).existing()
      let to = try ResultsStore(path: destination)
      let started = Date()
      let summary = try from.copyRuns(to: to)
      print(
        String(
          format: "copied %d run%@ from %@ to %@, brought %d up to date; %d already there (%.1f s)", summary.copied, summary.copied == 1 ? "" : "s", from.displayPath, to.displayPath,
          summary.updated, summary.skipped, Date().timeIntervalSince(started)))
      guard summary.notCopied.isEmpty else {
        for (id, reason) in summary.notCopied { printError("run \(id) was not copied: \(reason)") }
        throw UserFacingError(
          "\(summary.notCopied.count) run\(summary.notCopied.count == 1 ? " was" : "s were") not copied (named above; every other run was); fix them in the source, or delete them from the destination, and copy again")
      }
    }
  }
}
