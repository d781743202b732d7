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
    // One line, as every other error (issue #45, cause T): the parser's message, clipped, and where
    // the help is; not its help and usage lines.
    printError(argumentErrorLine(message: String(lines[0]), helpHint: lines.last { $0.contains("See '") }.map(String.init), arguments: arguments))
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

/// The one line an argument error prints: the parser's message (a value it echoes clipped to 80
/// characters), a negative number after an option named as such (the parser reads `--seed -1` as
/// a missing value followed by an option `-1`), and the command's help hint.
func argumentErrorLine(message: String, helpHint: String?, arguments: [String]) -> String {
  var text = message
  // `The value 'VALUE' is invalid for '--opt': REASON`: the value clipped, the reason whole.
  let opening = "The value '"
  if text.hasPrefix(opening), let end = text.range(of: "' is invalid for ") {
    let value = text[text.index(text.startIndex, offsetBy: opening.count)..<end.lowerBound]
    if value.count > 80 { text = opening + "\(value.prefix(60))… (\(value.count) characters)" + text[end.lowerBound...] }
  }
  if message.hasPrefix("Missing value for '"), let option = message.dropFirst("Missing value for '".count).split(separator: " ").first.map(String.init),
    let i = arguments.firstIndex(of: option), i + 1 < arguments.count, Double(arguments[i + 1]) != nil
  {
    text = "\(option) does not take a negative number (\(arguments[i + 1]))"
  }
  // A value the parser echoes (a 17-part --set path, a pasted paragraph) is clipped.
  if text.count > 400 { text = String(text.prefix(360)) + "… (\(text.count) characters)" }
  let hint = helpHint.map { $0.trimmingCharacters(in: .whitespaces) }.map { "; s" + $0.dropFirst() } ?? ""
  return text + hint
}

/// The message of a typed option's own error inside the parser's "The value 'x' is invalid
/// for '--opt <v>': MESSAGE", when MESSAGE names its option (`--set x: write it as ...`).
func ownValueMessage(_ line: String) -> String? {
  guard line.hasPrefix("The value '"), let range = line.range(of: "': --") else { return nil }
  return String(line[line.index(range.lowerBound, offsetBy: 3)...])
}
