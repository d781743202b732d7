import ArgumentParser
import Episodes
import Experiments
import Foundation
import Model
import Reports
import ResultsStore
import Support

/// The root command: `oneshot-bench <subcommand>`.
struct OneshotBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "oneshot-bench",
    abstract: "One-shot character recognition benchmark harness: Siamese networks on Omniglot, Lake's 20 runs, results in SQLite.",
    version: harnessVersion,
    subcommands: [
      RunCommand.self, SweepCommand.self, EvaluateCommand.self, StoreCommand.self, ReportCommand.self, CheckCommand.self, CompareCommand.self, PredictCommand.self, EnsembleCommand.self, DatasetCommand.self, EpisodesCommand.self,
      BaselineCommand.self, BenchCommand.self, ExportCommand.self,
    ])
}

/// Parses and runs one command line; returns the process exit code. Errors a user can cause
/// print one line to standard error and return 2.
package func runCommand(_ arguments: [String]) -> Int32 {
  let commands = OneshotBench.configuration.subcommands.map { $0.configuration.commandName ?? "" } + ["help"]
  if let first = arguments.first, !first.hasPrefix("-"), !commands.contains(first) {
    let closest = commands.min { editDistance(first, $0) < editDistance(first, $1) }!
    let guess = editDistance(first, closest) <= max(2, first.count / 3) ? "; did you mean '\(closest)'?" : ""
    printError("unknown command '\(first)'\(guess) (`oneshot-bench --help` lists them: \(commands.dropLast().joined(separator: ", ")))")
    return 2
  }
  // `run --help` is about running an experiment, the thing `run` is for; the group's own page
  // would list only its subcommands and hide every option of `run FILE`.
  if [["run", "--help"], ["run", "-h"], ["help", "run"]].contains(arguments) {
    print(OneshotBench.helpMessage(for: RunExperimentCommand.self))
    print("\nALSO:\n  run tag RUN key=value ...   set tags on a recorded run\n  run note RUN TEXT           write a note on a recorded run")
    print("  run delete RUN [--files]    delete a recorded run (with --files, its checkpoint folder)\n  See 'oneshot-bench run tag --help' (note, delete) for detailed help.")
    return 0
  }
  do {
    var command = try OneshotBench.parseAsRoot(arguments)
    try command.run()
    return 0
  } catch let error as any UserCausedError {
    printError(error.description)
    return 2
  } catch let left as RunLeftResumable {
    printError(left.description)
    return left.exitCode
  } catch let interrupted as InterruptedBeforeRecording {
    printError(interrupted.description)
    return interrupted.exitCode
  } catch let exit as ExitCode {
    return exit.rawValue
  } catch {
    let code = OneshotBench.exitCode(for: error)
    if code == .success {
      print(OneshotBench.fullMessage(for: error))
      return 0
    }
    var message = OneshotBench.fullMessage(for: error).trimmingCharacters(in: .whitespacesAndNewlines)
    if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
    let lines = message.split(separator: "\n", omittingEmptySubsequences: false)
    // A value that a typed option refused (`--set`, `--grid`, `--seeds`) explains itself in one
    // line: the option's own message, without the parser's wrapper and usage.
    if let own = ownValueMessage(String(lines[0])) {
      printError(own)
      return 2
    }
    // The parser's message, then its usage lines as they are.
    printError(String(lines[0]))
    if lines.count > 1 { printNote(lines.dropFirst().joined(separator: "\n")) }
    return code == .validationFailure ? 2 : code.rawValue
  }
}

/// Standard output of the commands as the harness writes its own (`standardOutput`): the
/// module's `print` is this one, so no command can print a password or a terminal escape.
func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
  Swift.print(standardOutput(items.map { "\($0)" }.joined(separator: separator)), terminator: terminator)
}

/// Levenshtein distance, for suggesting the command a user meant.
func editDistance(_ a: String, _ b: String) -> Int {
  let a = Array(a), b = Array(b)
  var previous = Array(0...b.count)
  for i in 1...max(a.count, 1) where !a.isEmpty {
    var current = [i] + [Int](repeating: 0, count: b.count)
    for j in 1...max(b.count, 1) where !b.isEmpty {
      current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return a.isEmpty ? b.count : previous[b.count]
}

/// The message of a typed option's own error inside the parser's "The value 'x' is invalid
/// for '--opt <v>': MESSAGE", when MESSAGE names its option (`--set x: write it as ...`).
func ownValueMessage(_ line: String) -> String? {
  guard line.hasPrefix("The value '"), let range = line.range(of: "': --") else { return nil }
  return String(line[line.index(range.lowerBound, offsetBy: 3)...])
}
